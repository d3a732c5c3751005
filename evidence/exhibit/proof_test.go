package exhibit

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// proofCases are parseProof's table cases; FuzzParseProof is seeded from
// them.
func proofCases(t testing.TB) []struct {
	name, in, wantErr string
} {
	h := strings.Repeat("ab", 32)
	good := proofFile{Camera: "cam-1", Clip: "c0.mp4", File: "data/cam-1/c0.mp4", Body: `{"camera":"cam-1"}`, LeafHash: h, Index: 1, TreeSize: 3, Hashes: []string{h, h}}
	enc := func(p proofFile) string {
		b, err := encodeProof(p)
		require.NoError(t, err)
		return string(b)
	}
	with := func(f func(*proofFile)) string {
		p := good
		p.Hashes = append([]string(nil), good.Hashes...)
		f(&p)
		return enc(p)
	}
	return []struct{ name, in, wantErr string }{
		{"good", enc(good), ""},
		{"no hashes", with(func(p *proofFile) { p.Hashes = nil; p.Index = 0; p.TreeSize = 1 }), ""},
		{"not json", "hello", "not a proof file"},
		{"unknown field", strings.Replace(enc(good), `"camera"`, `"extra": 1, "camera"`, 1), `unknown field "extra"`},
		{"trailing data", enc(good) + "{}", "data after the JSON object"},
		{"bad camera", with(func(p *proofFile) { p.Camera = "../x"; p.File = "data/../x/c0.mp4" }), `camera "../x" is not a valid device id`},
		{"bad clip", with(func(p *proofFile) { p.Clip = ".."; p.File = "data/cam-1/.." }), `clip ".." is not a valid clip id`},
		{"wrong file", with(func(p *proofFile) { p.File = "data/cam-2/c0.mp4" }), `file "data/cam-2/c0.mp4" is not data/cam-1/c0.mp4`},
		{"no body", with(func(p *proofFile) { p.Body = "" }), "body is empty"},
		{"bad leaf", with(func(p *proofFile) { p.LeafHash = strings.ToUpper(h) }), "leaf_hash"},
		{"index outside", with(func(p *proofFile) { p.Index = 3 }), "index 3 is not inside a tree of size 3"},
		{"bad hash", with(func(p *proofFile) { p.Hashes[1] = "00" }), `hashes[1] "00" is not 64 lowercase hex digits`},
		{"reformatted", strings.ReplaceAll(enc(good), "\n", "\r\n"), "not in the exact form Vigil writes"},
		{"escaped differently", strings.Replace(enc(good), `"cam-1"`, `"cam\u002d1"`, 1), "not in the exact form Vigil writes"},
		{"duplicate key", strings.Replace(enc(good), `"body": `, `"body": "x", "body": `, 1), "not in the exact form Vigil writes"},
	}
}

func TestParseProof(t *testing.T) {
	for _, tt := range proofCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			p, proof, err := parseProof([]byte(tt.in))
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, p.Index, proof.Index)
			assert.Equal(t, p.TreeSize, proof.Size)
			assert.Len(t, proof.Hashes, len(p.Hashes))
		})
	}
}

// FuzzParseProof checks that no input panics parseProof and that whatever
// it accepts is exactly the encoding encodeProof gives for what it read, so
// a proof file has one reading. Seeds: the table cases and
// testdata/fuzz/FuzzParseProof.
func FuzzParseProof(f *testing.F) {
	for _, c := range proofCases(f) {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, proof, err := parseProof(data)
		if err != nil {
			return
		}
		again, err := encodeProof(p)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted a non-canonical proof file:\n%q\nre-encodes as\n%q", data, again)
		}
		if proof.Index >= proof.Size || len(proof.Hashes) != len(p.Hashes) {
			t.Fatalf("inconsistent proof %+v", proof)
		}
	})
}

// FuzzVerify runs Verify on mutations of a real package: it must never
// panic or return an I/O error for bytes in memory, and a mutated package
// that still verifies must have kept every clip's bytes.
func FuzzVerify(f *testing.F) {
	// Small clips and short records keep each run fast.
	fx := newSizedFixture(f, "vigil-site-a", 300)
	for i := range fx.pkg.Clips {
		fx.pkg.Clips[i].Continuity = fx.pkg.Clips[i].Continuity[:1]
	}
	z := fx.build(f)
	f.Add(z)
	f.Add(z[:len(z)-100])
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Verify(context.Background(), bytes.NewReader(data), int64(len(data)), Options{PubKey: fx.vkey})
		if err != nil {
			t.Fatalf("Verify of bytes in memory returned an error: %v", err)
		}
		if !r.OK() {
			return
		}
		for _, c := range r.Clips {
			want := fx.bytes[c.Camera+"/"+c.Clip]
			if want == nil || c.Size != int64(len(want)) {
				t.Fatalf("verified a clip that was not exported: %+v", c)
			}
		}
	})
}
