package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"time"
)

// Domain tags, the first netstring of each hash, so a content hash can never
// be mistaken for a record hash or for a hash made by another program.
const (
	contentTag = "vigil-audit-content-v1"
	recordTag  = "vigil-audit-record-v1"
)

// timeLayout is how a record's time enters its hash and a seal's time its
// text: UTC, always three fraction digits and "Z".
const timeLayout = "2006-01-02T15:04:05.000Z"

// formatTime writes t as it is hashed.
func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// writeNS writes s as a netstring (length, ':', bytes, ','), which is what
// makes the concatenation of fields unambiguous: no choice of field values
// can produce the same bytes as a different choice.
func writeNS(h hash.Hash, s string) {
	var buf [20]byte
	h.Write(strconv.AppendInt(buf[:0], int64(len(s)), 10))
	h.Write([]byte{':'})
	h.Write([]byte(s))
	h.Write([]byte{','})
}

// ContentHash returns the hex SHA-256 of r's content: every field except
// Seq, Prev and Hash (see the package documentation for the encoding). It
// does not depend on the record's position, which is how Verify recognises
// a record that was moved or renumbered.
func ContentHash(r Record) string {
	h := sha256.New()
	for _, s := range [...]string{contentTag, formatTime(r.At), r.Actor, r.Role, r.Action,
		r.Camera, r.Clip, r.Incident, r.Release, r.Why, r.From, r.Outcome, r.Detail} {
		writeNS(h, s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// RecordHash returns the hex SHA-256 that chains a record with the given
// content hash into the log at seq after the record whose hash is prev.
func RecordHash(seq int64, prev, content string) string {
	h := sha256.New()
	writeNS(h, recordTag)
	writeNS(h, strconv.FormatInt(seq, 10))
	writeNS(h, prev)
	writeNS(h, content)
	return hex.EncodeToString(h.Sum(nil))
}

// ComputeHash returns the hash r should carry given its fields, Seq and
// Prev included. A stored record whose Hash differs was changed after it
// was written.
func (r Record) ComputeHash() string { return RecordHash(r.Seq, r.Prev, ContentHash(r)) }

// isHash reports whether s is 64 lowercase hex digits.
func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
