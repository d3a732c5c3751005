package bagit

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// FuzzParseManifest checks that any manifest text parses without panicking,
// that every accepted line has a safe path and a lowercase hex digest, and
// that writing the accepted entries and parsing them again gives them back.
// Seeds: the table cases, plus testdata/fuzz/FuzzParseManifest.
func FuzzParseManifest(f *testing.F) {
	for _, c := range manifestCases() {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _ := ParseManifest(data, SHA256)
		digests := map[string]string{}
		for _, e := range entries {
			if err := checkPath(e.Path); err != nil {
				t.Fatalf("accepted unsafe path %q: %v", e.Path, err)
			}
			if len(e.Digest) != 64 || strings.ToLower(e.Digest) != e.Digest {
				t.Fatalf("accepted digest %q", e.Digest)
			}
			if _, dup := digests[e.Path]; dup {
				t.Fatalf("accepted %q twice", e.Path)
			}
			digests[e.Path] = e.Digest
		}
		again, err := ParseManifest(formatManifest(digests), SHA256)
		if err != nil {
			t.Fatalf("re-parse of written manifest: %v", err)
		}
		if len(again) != len(entries) {
			t.Fatalf("round trip: %d entries, then %d", len(entries), len(again))
		}
		for _, e := range again {
			if digests[e.Path] != e.Digest {
				t.Fatalf("round trip changed %q", e.Path)
			}
		}
	})
}

// FuzzParseInfo checks that any bag-info.txt parses without panicking and
// that accepted labels obey RFC 8493.
func FuzzParseInfo(f *testing.F) {
	for _, s := range []string{"A: 1\nB-C: two words\n", "A: one\n  two\n\tthree\nB: x\n", "A 1\n", " x\n", "A : 1\n", ": 1\n", "Payload-Oxum: 1.1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fields, _ := ParseInfo(data)
		for _, fl := range fields {
			if err := checkLabel(fl.Label); err != nil {
				t.Fatalf("accepted label %q: %v", fl.Label, err)
			}
			if strings.ContainsAny(fl.Value, "\r\n") {
				t.Fatalf("value %q holds a line break", fl.Value)
			}
		}
	})
}

// FuzzOpen feeds arbitrary bytes to the bag reader: Open and Validate must
// never panic, and a bag they accept must have only safe, unique paths
// under its directory. Seeded with a valid bag and some tricky ones.
func FuzzOpen(f *testing.F) {
	good := makeBag(f, "b", []entry{{"c/x", []byte("clip")}}, []entry{{"t.txt", []byte("t\n")}})
	f.Add(good)
	es := files(f, good)
	f.Add(rezip(f, append(es, entry{"b/../x", []byte("x")})))
	f.Add(rezip(f, append(es, entry{"b/data/c/x", []byte("dup")})))
	f.Add(rezip(f, es[1:]))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, p := range b.Paths() {
			if err := checkPath(p); err != nil {
				t.Fatalf("Open accepted unsafe path %q: %v", p, err)
			}
			if seen[strings.ToLower(p)] {
				t.Fatalf("Open accepted %q twice", p)
			}
			seen[strings.ToLower(p)] = true
		}
		r, err := b.Validate(context.Background(), func(done, total int64) {
			if done < 0 || done > total {
				t.Fatalf("progress %d of %d", done, total)
			}
		})
		if err != nil {
			t.Fatalf("Validate on an in-memory zip: %v", err)
		}
		if r.OK() && len(r.Files) != len(b.Paths()) {
			t.Fatalf("valid bag with %d results for %d files", len(r.Files), len(b.Paths()))
		}
	})
}
