package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendGetAt(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)

	c := clipN("cam-1", 0)
	// A non-UTC time with sub-millisecond precision is normalised.
	c.Start = c.Start.In(time.FixedZone("BST", 3600)).Add(123456 * time.Nanosecond)
	e, err := f.l.Append(ctx, c)
	require.NoError(t, err)

	assert.Equal(t, uint64(0), e.Index)
	assert.Equal(t, "", e.Prev)
	assert.Equal(t, time.UTC, e.Start.Location())
	assert.True(t, e.Start.Equal(t0), "start %s truncated to the millisecond", e.Start)
	assert.Equal(t, hexHash(LeafHash(e.Body)), e.Hash)
	assert.Contains(t, string(e.Body), `"start":"2025-03-01T09:00:00.000Z"`)

	got, err := f.l.Get(ctx, "cam-1", "c0")
	require.NoError(t, err)
	assert.Equal(t, e, got)

	at, err := f.l.At(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, e, at)

	n, err := f.l.Size(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), n)

	_, err = f.l.Get(ctx, "cam-1", "nope")
	assert.ErrorIs(t, err, ErrNotFound)
	assert.EqualError(t, err, "ledger: get cam-1/nope: ledger: not found")
	_, err = f.l.At(ctx, 1)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = f.l.At(ctx, 1<<63)
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestAppendDuplicate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	first, err := f.l.Append(ctx, clipN("cam-1", 0))
	require.NoError(t, err)

	again := clipN("cam-1", 0)
	again.Size = 99 // a different clip under the same id is still a duplicate
	e, err := f.l.Append(ctx, again)
	require.ErrorIs(t, err, ErrDuplicate)
	assert.Equal(t, "ledger: append cam-1/c0: ledger: duplicate clip (entry 0)", err.Error())
	assert.Equal(t, first, e, "the existing entry is returned")

	// The same clip id on another camera is a different clip.
	other, err := f.l.Append(ctx, clipN("cam-2", 0))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), other.Index, "the duplicate consumed no index")
}

func TestAppendValidation(t *testing.T) {
	ok := clipN("cam-1", 0)
	tests := []struct {
		name   string
		modify func(*Clip)
		want   string
	}{
		{"empty camera", func(c *Clip) { c.Camera = "" }, `camera "" is not a device id`},
		{"camera with slash", func(c *Clip) { c.Camera = "cam/1" }, `camera "cam/1" is not a device id`},
		{"empty clip", func(c *Clip) { c.Clip = "" }, `clip "" is not a clip id`},
		{"clip with dot-dot", func(c *Clip) { c.Clip = "a..b" }, `clip "a..b" is not a clip id`},
		{"clip starting with dot", func(c *Clip) { c.Clip = ".hidden" }, `clip ".hidden" is not a clip id`},
		{"uppercase sha256", func(c *Clip) { c.SHA256 = strings.ToUpper(c.SHA256) }, "is not 64 lowercase hex digits"},
		{"short sha256", func(c *Clip) { c.SHA256 = "abc" }, `sha256 "abc" is not 64 lowercase hex digits`},
		{"zero size", func(c *Clip) { c.Size = 0 }, "size 0 is not a positive number of bytes"},
		{"negative size", func(c *Clip) { c.Size = -5 }, "size -5 is not a positive number of bytes"},
		{"missing start", func(c *Clip) { c.Start = time.Time{} }, "start time is missing"},
		{"missing received", func(c *Clip) { c.Received = time.Time{} }, "received time is missing"},
		{"end before start", func(c *Clip) { c.End = c.Start.Add(-time.Second) }, "end 2025-03-01T08:59:59.000Z is before start 2025-03-01T09:00:00.000Z"},
		{"before 1970", func(c *Clip) { c.Start = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC) }, "start time 1960-01-01T00:00:00Z is outside the years 1970-9999"},
		{"unknown ingest", func(c *Clip) { c.Ingest = "ftp" }, `ingest "ftp" is neither "tus" nor "dock"`},
		{"wearer with newline", func(c *Clip) { c.Wearer = "a\nb" }, "wearer contains a control character"},
		{"site with U+2028", func(c *Clip) { c.Site = "a\u2028b" }, "site contains a control character"},
		{"wearer invalid UTF-8", func(c *Clip) { c.Wearer = "\xff" }, "wearer is not valid UTF-8"},
		{"site too long", func(c *Clip) { c.Site = strings.Repeat("s", 257) }, "site is 257 bytes, more than 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			c := ok
			tt.modify(&c)
			_, err := f.l.Append(context.Background(), c)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), tt.want)
			assert.True(t, strings.HasPrefix(err.Error(), "ledger: append "), err.Error())
			n, err := f.l.Size(context.Background())
			require.NoError(t, err)
			assert.Zero(t, n, "nothing was recorded")
		})
	}

	t.Run("text with quotes, backslashes and HTML is accepted", func(t *testing.T) {
		f := newFixture(t)
		c := ok
		c.Wearer = `J "Jo" O'Neil \ <&> Zoë`
		e, err := f.l.Append(context.Background(), c)
		require.NoError(t, err)
		assert.Contains(t, string(e.Body), `"wearer":"J \"Jo\" O'Neil \\ <&> Zoë"`)
	})
}

func TestChainsInterleaved(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	// cam-1, cam-2, cam-3 interleaved irregularly.
	order := []string{"cam-1", "cam-2", "cam-1", "cam-3", "cam-3", "cam-1", "cam-2", "cam-3", "cam-1"}
	count := map[string]int{}
	last := map[string]string{}
	for i, cam := range order {
		e, err := f.l.Append(ctx, clipN(cam, count[cam]))
		require.NoError(t, err)
		count[cam]++
		assert.Equal(t, uint64(i), e.Index)
		assert.Equal(t, last[cam], e.Prev, "entry %d (%s) links to its camera's previous entry", i, cam)
		assert.Contains(t, string(e.Body), fmt.Sprintf(`"prev":"%s"}`, last[cam]))
		last[cam] = e.Hash
	}

	for cam, n := range count {
		entries, err := f.l.List(ctx, Filter{Camera: cam})
		require.NoError(t, err)
		require.Len(t, entries, n)
		prev := ""
		for _, e := range entries {
			assert.Equal(t, prev, e.Prev)
			prev = e.Hash
		}
	}
	rep, err := f.l.Verify(ctx, f.v)
	require.NoError(t, err)
	assert.True(t, rep.OK(), problemsText(rep))
}

func TestList(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	// cam-1 clips n=0..3 start at t0+n*10m and last 5m; same for cam-2.
	f.appendAlternating(t, 8, "cam-1", "cam-2")

	tests := []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"everything", Filter{}, []uint64{0, 1, 2, 3, 4, 5, 6, 7}},
		{"one camera", Filter{Camera: "cam-2"}, []uint64{1, 3, 5, 7}},
		{"unknown camera", Filter{Camera: "cam-9"}, nil},
		{"from only", Filter{From: t0.Add(20 * time.Minute)}, []uint64{4, 5, 6, 7}},
		{"to only", Filter{To: t0.Add(10 * time.Minute)}, []uint64{0, 1, 2, 3}},
		{"overlap at the start of a clip", Filter{From: t0.Add(7 * time.Minute), To: t0.Add(10 * time.Minute)}, []uint64{2, 3}},
		{"inside one clip", Filter{From: t0.Add(11 * time.Minute), To: t0.Add(12 * time.Minute)}, []uint64{2, 3}},
		{"touching the end of a clip", Filter{From: t0.Add(15 * time.Minute), To: t0.Add(16 * time.Minute)}, []uint64{2, 3}},
		{"in a gap", Filter{From: t0.Add(6 * time.Minute), To: t0.Add(9 * time.Minute)}, nil},
		{"camera and window", Filter{Camera: "cam-1", From: t0.Add(10 * time.Minute), To: t0.Add(30 * time.Minute)}, []uint64{2, 4, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.l.List(ctx, tt.f)
			require.NoError(t, err)
			var idx []uint64
			for _, e := range got {
				idx = append(idx, e.Index)
			}
			assert.Equal(t, tt.want, idx)
		})
	}
}

func TestConcurrentAppend(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	const workers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Two workers share each camera, so chains interleave under contention.
				if _, err := f.l.Append(ctx, clipN(fmt.Sprintf("cam-%d", w%2), w*each+i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n, err := f.l.Size(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(workers*each), n)
	rep, err := f.l.Verify(ctx, f.v)
	require.NoError(t, err)
	assert.True(t, rep.OK(), problemsText(rep))
}

func TestOpen(t *testing.T) {
	ctx := context.Background()

	t.Run("reopen keeps entries and checkpoints", func(t *testing.T) {
		f := newFixture(t)
		f.appendAlternating(t, 3, "cam-1")
		_, _, err := f.l.Checkpoint(ctx, t0)
		require.NoError(t, err)
		l2, err := Open(ctx, f.db, f.signer, testOrigin)
		require.NoError(t, err)
		n, err := l2.Size(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(3), n)
		e, err := l2.Append(ctx, clipN("cam-1", 3))
		require.NoError(t, err)
		assert.NotEmpty(t, e.Prev)
	})

	t.Run("another origin is refused once checkpoints exist", func(t *testing.T) {
		f := newFixture(t)
		f.appendAlternating(t, 1, "cam-1")
		_, _, err := f.l.Checkpoint(ctx, t0)
		require.NoError(t, err)
		_, err = Open(ctx, f.db, f.signer, "vigil.test/other")
		assert.EqualError(t, err, `ledger: open: stored checkpoints are for origin "vigil.test/site-a/evidence", not "vigil.test/other"`)
	})

	t.Run("bad origins", func(t *testing.T) {
		db := openDB(t)
		for _, o := range []string{"", " x", "a\nb", "a\tb"} {
			_, err := Open(ctx, db, nil, o)
			assert.Error(t, err, "%q", o)
		}
	})

	t.Run("a corrupt checkpoint does not stop Open, so Verify can name it", func(t *testing.T) {
		f := newFixture(t)
		f.appendAlternating(t, 2, "cam-1")
		_, _, err := f.l.Checkpoint(ctx, t0)
		require.NoError(t, err)
		f.exec(t, `UPDATE ledger_checkpoints SET note = 'garbage'`)

		l, err := Open(ctx, f.db, f.signer, testOrigin)
		require.NoError(t, err)
		rep, err := l.Verify(ctx, f.v)
		require.NoError(t, err)
		require.Len(t, rep.Problems, 1, problemsText(rep))
		assert.Equal(t, "checkpoint 1: not a signed note: malformed note", rep.Problems[0].What)

		f.appendAlternating(t, 1, "cam-2")
		_, _, err = l.Checkpoint(ctx, t0.Add(time.Minute))
		assert.ErrorContains(t, err, "ledger: checkpoint: checkpoint 1 is corrupt (run verify)")
		_, _, err = l.Latest(ctx)
		assert.Error(t, err)
	})

	t.Run("corrupt body is an error, not a panic", func(t *testing.T) {
		f := newFixture(t)
		f.appendAlternating(t, 1, "cam-1")
		f.exec(t, `UPDATE ledger_entries SET body = 'garbage'`)
		_, err := f.l.Get(ctx, "cam-1", "c0")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "ledger: get cam-1/c0: entry 0 is corrupt (run verify)")
		_, err = f.l.List(ctx, Filter{})
		assert.Error(t, err)
		assert.False(t, errors.Is(err, ErrNotFound))
	})
}
