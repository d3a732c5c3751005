package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is the injected time of a Dir under test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestDir(t *testing.T) (*Dir, *fakeClock, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "objects")
	d, err := NewDir(root)
	require.NoError(t, err)
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	d.now = clock.now
	require.NoError(t, d.InitBucket(context.Background()))
	return d, clock, root
}

func putBytes(t *testing.T, d *Dir, key string, data []byte, opts PutOptions) Object {
	t.Helper()
	if opts.SHA256 == "" {
		opts.SHA256 = sha(data)
	}
	o, err := d.Upload(context.Background(), key, bytes.NewReader(data), int64(len(data)), opts, Resume{}, nil)
	require.NoError(t, err)
	return o
}

func TestDirRoundTrip(t *testing.T) {
	ctx := context.Background()
	d, clock, root := newTestDir(t)
	require.NoError(t, d.CheckBucket(ctx))

	data := bytes.Repeat([]byte("footage "), 100_000)
	until := clock.now().Add(31*24*time.Hour + 500*time.Millisecond)
	o := putBytes(t, d, "clips/site/cam-1/2026/03/01/c1", data, PutOptions{
		Meta: map[string]string{"camera": "cam-1"}, ContentType: "video/mp4",
		Mode: Governance, RetainUntil: until,
	})
	assert.Equal(t, int64(len(data)), o.Size)
	assert.Equal(t, sha(data), o.SHA256)
	assert.Equal(t, ceilSecond(until), o.RetainUntil, "rounded up, never down")
	assert.Empty(t, o.VersionID)

	st, err := d.Stat(ctx, "clips/site/cam-1/2026/03/01/c1")
	require.NoError(t, err)
	assert.Equal(t, Governance, st.Mode)
	assert.Equal(t, ceilSecond(until), st.RetainUntil)
	assert.False(t, st.LegalHold)
	assert.Equal(t, map[string]string{"camera": "cam-1"}, st.Meta)
	assert.False(t, st.LastModified.IsZero())

	rc, err := d.Open(ctx, "clips/site/cam-1/2026/03/01/c1")
	require.NoError(t, err)
	got, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	assert.Equal(t, data, got)

	require.NoError(t, d.Verify(ctx, "clips/site/cam-1/2026/03/01/c1", int64(len(data)), sha(data), false))
	require.NoError(t, d.Verify(ctx, "clips/site/cam-1/2026/03/01/c1", int64(len(data)), strings.ToUpper(sha(data)), true))

	seal := []byte("audit seal")
	require.NoError(t, d.PutSmall(ctx, "audit/seal-1", seal, PutOptions{Mode: Compliance, RetainUntil: clock.now().Add(time.Hour)}))
	st, err = d.Stat(ctx, "audit/seal-1")
	require.NoError(t, err)
	assert.Equal(t, sha(seal), st.SHA256, "PutSmall computes the digest")
	assert.Equal(t, Compliance, st.Mode)
	err = d.PutSmall(ctx, "audit/seal-2", seal, PutOptions{SHA256: sha([]byte("other"))})
	assert.ErrorIs(t, err, ErrMismatch)

	_, err = d.Presign(ctx, "audit/seal-1", time.Minute)
	assert.ErrorIs(t, err, ErrNoPresign)

	_, err = d.Stat(ctx, "clips/nope")
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = d.Open(ctx, "clips/nope")
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = d.Open(ctx, "clips/site") // a prefix, not an object
	assert.ErrorIs(t, err, ErrNotFound)

	// Files are read-only, directories private, and no temp file remains.
	fi, err := os.Stat(filepath.Join(root, "data", "audit", "seal-1"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o400), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(root, "data", "audit"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	tmp, err := os.ReadDir(filepath.Join(root, "tmp"))
	require.NoError(t, err)
	assert.Empty(t, tmp)
}

func TestDirList(t *testing.T) {
	ctx := context.Background()
	d, _, _ := newTestDir(t)
	for _, k := range []string{"clips/a/2", "clips/a/1", "clips/ab/1", "clips/b/1", "checkpoints/x/1", "meta/x", "tmp/y"} {
		putBytes(t, d, k, []byte(k), PutOptions{})
	}
	keys := func(prefix string) []string {
		objs, err := d.List(ctx, prefix)
		require.NoError(t, err)
		var out []string
		for _, o := range objs {
			assert.Equal(t, int64(len(o.Key)), o.Size)
			out = append(out, o.Key)
		}
		return out
	}
	assert.Equal(t, []string{"checkpoints/x/1", "clips/a/1", "clips/a/2", "clips/ab/1", "clips/b/1", "meta/x", "tmp/y"}, keys(""),
		"only objects are listed: keys that look like the store's own directories are ordinary objects")
	assert.Equal(t, []string{"clips/a/1", "clips/a/2", "clips/ab/1"}, keys("clips/a"))
	assert.Equal(t, []string{"clips/a/1", "clips/a/2"}, keys("clips/a/"))
	assert.Empty(t, keys("nothing/"))
	_, err := d.List(ctx, "../")
	assert.Error(t, err)
}

func TestDirDigestAndSourceChecks(t *testing.T) {
	ctx := context.Background()
	d, _, root := newTestDir(t)
	data := []byte("the real bytes")

	_, err := d.Upload(ctx, "k", bytes.NewReader(data), int64(len(data)), PutOptions{SHA256: sha([]byte("declared"))}, Resume{}, nil)
	assert.ErrorIs(t, err, ErrMismatch)
	_, err = d.Stat(ctx, "k")
	assert.ErrorIs(t, err, ErrNotFound, "nothing stored on a digest mismatch")

	_, err = d.Upload(ctx, "k", bytes.NewReader(data), int64(len(data))+10, PutOptions{SHA256: sha(data)}, Resume{}, nil)
	assert.ErrorContains(t, err, "short")
	_, err = d.Upload(ctx, "k", bytes.NewReader(data), int64(len(data)), PutOptions{}, Resume{}, nil)
	assert.ErrorContains(t, err, "SHA256", "Upload needs the caller's digest")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = d.Upload(cctx, "k", newPattern(8<<20, 1), 8<<20, PutOptions{SHA256: sha(nil)}, Resume{}, nil)
	assert.ErrorIs(t, err, context.Canceled)

	tmp, err := os.ReadDir(filepath.Join(root, "tmp"))
	require.NoError(t, err)
	assert.Empty(t, tmp, "failed uploads leave no temp file")
}

func TestDirDeleteRules(t *testing.T) {
	ctx := context.Background()
	d, clock, _ := newTestDir(t)
	hour := clock.now().Add(time.Hour)
	cases := []struct {
		name   string
		opts   PutOptions
		bypass bool
		locked bool
	}{
		{"no retention", PutOptions{}, false, false},
		{"compliance", PutOptions{Mode: Compliance, RetainUntil: hour}, false, true},
		{"compliance with bypass", PutOptions{Mode: Compliance, RetainUntil: hour}, true, true},
		{"governance", PutOptions{Mode: Governance, RetainUntil: hour}, false, true},
		{"governance with bypass", PutOptions{Mode: Governance, RetainUntil: hour}, true, false},
		{"legal hold", PutOptions{LegalHold: true}, false, true},
		{"legal hold with bypass", PutOptions{LegalHold: true}, true, true},
		{"legal hold and governance with bypass", PutOptions{LegalHold: true, Mode: Governance, RetainUntil: hour}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := "del/" + strings.ReplaceAll(tc.name, " ", "-")
			putBytes(t, d, key, []byte(tc.name), tc.opts)
			err := d.Delete(ctx, key, tc.bypass)
			if tc.locked {
				require.ErrorIs(t, err, ErrLocked)
				_, err = d.Stat(ctx, key)
				assert.NoError(t, err, "still there")
			} else {
				require.NoError(t, err)
				_, err = d.Stat(ctx, key)
				assert.ErrorIs(t, err, ErrNotFound)
			}
		})
	}

	// Retention ends with its date; a hold ends when lifted.
	putBytes(t, d, "later/c", []byte("c"), PutOptions{Mode: Compliance, RetainUntil: hour})
	putBytes(t, d, "later/h", []byte("h"), PutOptions{LegalHold: true})
	require.ErrorIs(t, d.Delete(ctx, "later/c", true), ErrLocked)
	clock.advance(time.Hour + time.Second)
	require.NoError(t, d.Delete(ctx, "later/c", false))
	require.NoError(t, d.SetLegalHold(ctx, "later/h", false))
	st, err := d.Stat(ctx, "later/h")
	require.NoError(t, err)
	assert.False(t, st.LegalHold)
	require.NoError(t, d.Delete(ctx, "later/h", false))
	assert.ErrorIs(t, d.Delete(ctx, "later/h", false), ErrNotFound)

	// Retention in the past is refused, as S3 refuses it.
	_, err = d.Upload(ctx, "past", bytes.NewReader(nil), 0, PutOptions{SHA256: sha(nil), Mode: Governance, RetainUntil: clock.now().Add(-time.Second)}, Resume{}, nil)
	assert.ErrorContains(t, err, "not in the future")
}

func TestDirExtendRetention(t *testing.T) {
	ctx := context.Background()
	d, clock, _ := newTestDir(t)
	t1 := clock.now().Add(time.Hour)
	t2 := clock.now().Add(2 * time.Hour)
	putBytes(t, d, "g", []byte("g"), PutOptions{Mode: Governance, RetainUntil: t1})
	putBytes(t, d, "c", []byte("c"), PutOptions{Mode: Compliance, RetainUntil: t2})
	putBytes(t, d, "n", []byte("n"), PutOptions{Meta: map[string]string{"camera": "x"}})

	stat := func(k string) Object {
		o, err := d.Stat(ctx, k)
		require.NoError(t, err)
		return o
	}
	require.NoError(t, d.ExtendRetention(ctx, "g", Governance, t2))
	assert.Equal(t, t2, stat("g").RetainUntil)
	require.NoError(t, d.ExtendRetention(ctx, "g", Governance, t1), "an earlier date is a no-op")
	assert.Equal(t, t2, stat("g").RetainUntil)
	require.NoError(t, d.ExtendRetention(ctx, "g", Compliance, t1))
	assert.Equal(t, Compliance, stat("g").Mode, "GOVERNANCE becomes COMPLIANCE")
	assert.Equal(t, t2, stat("g").RetainUntil, "keeping the later date")

	require.NoError(t, d.ExtendRetention(ctx, "c", Governance, t2.Add(time.Hour)))
	assert.Equal(t, Compliance, stat("c").Mode, "never weakened")
	assert.Equal(t, t2.Add(time.Hour), stat("c").RetainUntil)

	require.NoError(t, d.ExtendRetention(ctx, "n", Governance, t1))
	assert.Equal(t, Governance, stat("n").Mode)
	assert.Equal(t, map[string]string{"camera": "x"}, stat("n").Meta, "metadata survives a sidecar rewrite")
	assert.ErrorIs(t, d.Delete(ctx, "n", false), ErrLocked)

	assert.ErrorIs(t, d.ExtendRetention(ctx, "missing", Governance, t1), ErrNotFound)
	assert.Error(t, d.ExtendRetention(ctx, "n", "", t1))
	clock.advance(3 * time.Hour)
	assert.ErrorContains(t, d.ExtendRetention(ctx, "n", Governance, t1), "not in the future")
}

func TestDirOverwrite(t *testing.T) {
	ctx := context.Background()
	d, clock, _ := newTestDir(t)
	hour := clock.now().Add(time.Hour)
	putBytes(t, d, "locked", []byte("one"), PutOptions{Mode: Compliance, RetainUntil: hour})

	_, err := d.Upload(ctx, "locked", bytes.NewReader([]byte("two")), 3, PutOptions{SHA256: sha([]byte("two"))}, Resume{}, nil)
	assert.ErrorIs(t, err, ErrLocked, "no versions: other bytes cannot replace a retained object")

	// The same bytes again, as after a crash before the caller recorded
	// the upload: accepted, protection only added to.
	o := putBytes(t, d, "locked", []byte("one"), PutOptions{Mode: Governance, RetainUntil: hour.Add(time.Hour), LegalHold: true})
	assert.Equal(t, Compliance, o.Mode)
	assert.Equal(t, hour.Add(time.Hour), o.RetainUntil)
	assert.True(t, o.LegalHold)

	putBytes(t, d, "free", []byte("one"), PutOptions{})
	o = putBytes(t, d, "free", []byte("three"), PutOptions{})
	assert.Equal(t, int64(5), o.Size, "an unprotected object may be replaced")
}

func TestDirVerify(t *testing.T) {
	ctx := context.Background()
	d, _, root := newTestDir(t)
	data := []byte("original footage")
	putBytes(t, d, "v", data, PutOptions{})

	cases := []struct {
		name string
		size int64
		sum  string
		want string
	}{
		{"size", int64(len(data)) + 1, sha(data), "size"},
		{"digest", int64(len(data)), sha([]byte("other")), "recorded sha256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Verify(ctx, "v", tc.size, tc.sum, false)
			require.ErrorIs(t, err, ErrMismatch)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	err := d.Verify(ctx, "missing", 1, sha(data), false)
	assert.ErrorIs(t, err, ErrMismatch)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Error(t, d.Verify(ctx, "v", 1, "not-hex", false))

	// Someone with a shell edits the file in place: same size, same
	// sidecar. Only a deep verify can tell.
	p := filepath.Join(root, "data", "v")
	require.NoError(t, os.Chmod(p, 0o600))
	require.NoError(t, os.WriteFile(p, []byte("tampered footage"), 0o600))
	require.NoError(t, d.Verify(ctx, "v", int64(len(data)), sha(data), false))
	err = d.Verify(ctx, "v", int64(len(data)), sha(data), true)
	require.ErrorIs(t, err, ErrMismatch)
	assert.Contains(t, err.Error(), "content")
}

func TestDirSidecarIntegrity(t *testing.T) {
	ctx := context.Background()
	d, clock, root := newTestDir(t)
	putBytes(t, d, "held", []byte("x"), PutOptions{LegalHold: true, Mode: Compliance, RetainUntil: clock.now().Add(time.Hour)})

	// A corrupt sidecar never reads as "unprotected".
	p := filepath.Join(root, "meta", "held")
	require.NoError(t, os.Chmod(p, 0o600))
	require.NoError(t, os.WriteFile(p, []byte("{not json"), 0o600))
	_, err := d.Stat(ctx, "held")
	assert.ErrorContains(t, err, "corrupt")
	err = d.Delete(ctx, "held", true)
	require.Error(t, err)
	_, err = os.Stat(filepath.Join(root, "data", "held"))
	assert.NoError(t, err, "not deleted")

	// A file dropped into data/ by hand has no digest: Verify flags it.
	require.NoError(t, os.WriteFile(filepath.Join(root, "data", "stray"), []byte("x"), 0o600))
	err = d.Verify(ctx, "stray", 1, sha([]byte("x")), false)
	assert.ErrorIs(t, err, ErrMismatch)
	assert.ErrorContains(t, err, "no sha256")
}

func TestDirPathTricks(t *testing.T) {
	ctx := context.Background()
	d, _, root := newTestDir(t)
	outside := filepath.Join(filepath.Dir(root), "outside")
	require.NoError(t, os.MkdirAll(outside, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600))

	for _, tc := range keyCases {
		if tc.ok {
			continue
		}
		t.Run(tc.key, func(t *testing.T) {
			_, err := d.Upload(ctx, tc.key, bytes.NewReader(nil), 0, PutOptions{SHA256: sha(nil)}, Resume{}, nil)
			assert.ErrorContains(t, err, "key")
			_, err = d.Stat(ctx, tc.key)
			assert.Error(t, err)
			assert.NotErrorIs(t, err, ErrNotFound, "refused, not looked up")
			_, err = d.Open(ctx, tc.key)
			assert.Error(t, err)
			assert.Error(t, d.Delete(ctx, tc.key, true))
			assert.Error(t, d.SetLegalHold(ctx, tc.key, false))
			assert.Error(t, d.ExtendRetention(ctx, tc.key, Governance, time.Now().Add(time.Hour)))
			assert.Error(t, d.PutSmall(ctx, tc.key, nil, PutOptions{}))
		})
	}

	// A symlink planted in the tree does not lead out of it.
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "data", "link")))
	_, err := d.Open(ctx, "link/secret")
	assert.Error(t, err)
	_, err = d.Upload(ctx, "link/new", bytes.NewReader([]byte("x")), 1, PutOptions{SHA256: sha([]byte("x"))}, Resume{}, nil)
	assert.Error(t, err)
	_, err = os.Stat(filepath.Join(outside, "new"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "nothing written outside the root")

	// An object cannot also be a prefix, in either order.
	putBytes(t, d, "a", []byte("a"), PutOptions{})
	_, err = d.Upload(ctx, "a/b", bytes.NewReader(nil), 0, PutOptions{SHA256: sha(nil)}, Resume{}, nil)
	assert.ErrorContains(t, err, "prefix")
	putBytes(t, d, "p/q", []byte("q"), PutOptions{})
	_, err = d.Upload(ctx, "p", bytes.NewReader(nil), 0, PutOptions{SHA256: sha(nil)}, Resume{}, nil)
	assert.ErrorContains(t, err, "prefix")
	_, err = d.Stat(ctx, "a/b")
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestDirInit(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "objects")
	d, err := NewDir(root)
	require.NoError(t, err)
	assert.ErrorContains(t, d.CheckBucket(ctx), "InitBucket")
	_, err = d.Stat(ctx, "k")
	assert.ErrorContains(t, err, "InitBucket")
	_, err = NewDir("")
	assert.Error(t, err)

	clock := &fakeClock{t: time.Now()}
	d.now = clock.now
	require.NoError(t, d.InitBucket(ctx))
	require.NoError(t, d.CheckBucket(ctx))

	// Temp files a crash left behind go at the next start, once stale.
	stale := filepath.Join(root, "tmp", "leftover")
	require.NoError(t, os.WriteFile(stale, []byte("x"), 0o600))
	require.NoError(t, d.InitBucket(ctx))
	assert.FileExists(t, stale, "a recent temp file may belong to a write in progress")
	clock.advance(25 * time.Hour)
	require.NoError(t, d.InitBucket(ctx))
	assert.NoFileExists(t, stale)
}
