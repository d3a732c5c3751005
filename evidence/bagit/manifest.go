package bagit

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Supported digest algorithms, as they appear in manifest file names
// (manifest-sha256.txt). RFC 8493 section 2.4 requires tools to support
// SHA-256 and SHA-512; weaker ones (MD5, SHA-1) are not accepted as evidence
// of anything.
const (
	SHA256 = "sha256"
	SHA512 = "sha512"
)

// hexLen is the length in hex digits of each supported algorithm's digest.
var hexLen = map[string]int{SHA256: 64, SHA512: 128}

// ManifestEntry is one line of a manifest: a file and its digest.
type ManifestEntry struct {
	// Digest is the file's digest in lowercase hex (RFC 8493 allows either
	// case; it is folded so digests compare as strings).
	Digest string
	// Path is the file's path relative to the bag's base directory, with
	// RFC 8493 percent-encoding undone.
	Path string
	// Line is the 1-based line number, for messages.
	Line int
}

// ParseManifest parses the text of a manifest or tag manifest: one
// "<hex digest> <path>" per line, separated by one or more spaces or tabs,
// lines ended by LF, CR or CRLF (RFC 8493 section 2.1.3). alg is the
// algorithm from the manifest's file name; for SHA256 and SHA512 the
// digest's length is checked too.
//
// It returns the well-formed lines, and, if any line is not, an error that
// joins one error per bad line ("line 3: ..."), so that the caller can check
// the good lines and report each bad one. A path that is unsafe (see Open)
// or listed twice makes its line bad.
func ParseManifest(b []byte, alg string) ([]ManifestEntry, error) {
	var out []ManifestEntry
	var errs []error
	seen := map[string]int{}
	for i, line := range splitLines(string(b)) {
		n := i + 1
		e, err := parseManifestLine(line, alg)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		if first, dup := seen[e.Path]; dup {
			errs = append(errs, fmt.Errorf("line %d: %s is listed again (first on line %d)", n, display(e.Path), first))
			continue
		}
		seen[e.Path] = n
		e.Line = n
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}

func parseManifestLine(line, alg string) (ManifestEntry, error) {
	if line == "" {
		return ManifestEntry{}, errors.New("blank line")
	}
	if !utf8.ValidString(line) {
		return ManifestEntry{}, errors.New("not valid UTF-8")
	}
	sep := strings.IndexAny(line, " \t")
	if sep < 0 {
		return ManifestEntry{}, errors.New("no path after the digest")
	}
	digest := line[:sep]
	path := strings.TrimLeft(line[sep:], " \t")
	if digest == "" {
		return ManifestEntry{}, errors.New("line starts with whitespace instead of a digest")
	}
	if path == "" {
		return ManifestEntry{}, errors.New("no path after the digest")
	}
	if _, err := hex.DecodeString(digest); err != nil || len(digest)%2 != 0 {
		return ManifestEntry{}, fmt.Errorf("digest %s is not hexadecimal", display(digest))
	}
	if want, ok := hexLen[alg]; ok && len(digest) != want {
		return ManifestEntry{}, fmt.Errorf("digest has %d hex digits, %s has %d", len(digest), alg, want)
	}
	path = decodePath(path)
	if err := checkPath(path); err != nil {
		return ManifestEntry{}, fmt.Errorf("path %s: %w", display(path), err)
	}
	return ManifestEntry{Digest: strings.ToLower(digest), Path: path}, nil
}

// formatManifest writes entries (path → lowercase hex) as a manifest sorted
// by path, with two spaces between digest and path so that sha256sum -c and
// sha512sum -c read it as it is.
func formatManifest(digests map[string]string) []byte {
	paths := make([]string, 0, len(digests))
	for p := range digests {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(digests[p])
		b.WriteString("  ")
		b.WriteString(encodePath(p))
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// splitLines splits text at LF, CRLF or CR, the line endings RFC 8493 allows.
// A final line ending ends the last line rather than starting an empty one.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	s = strings.TrimSuffix(s, "\n")
	return strings.Split(s, "\n")
}

// Field is one element of bag-info.txt.
type Field struct {
	// Label names the element, e.g. "External-Identifier". Labels compare
	// without regard to case (see Lookup).
	Label string
	// Value is the element's value on one line; folded continuation lines
	// are joined with a single space when reading.
	Value string
}

// ParseInfo parses bag-info.txt: "Label: value" lines, where a line that
// starts with a space or tab continues the previous value (RFC 8493 section
// 2.2.2). Like ParseManifest it returns the well-formed fields and an error
// joining one error per bad line.
func ParseInfo(b []byte) ([]Field, error) {
	var out []Field
	var errs []error
	for i, line := range splitLines(string(b)) {
		n := i + 1
		if !utf8.ValidString(line) {
			errs = append(errs, fmt.Errorf("line %d: not valid UTF-8", n))
			continue
		}
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if len(out) == 0 {
				errs = append(errs, fmt.Errorf("line %d: continuation line before any label", n))
				continue
			}
			out[len(out)-1].Value += " " + strings.Trim(line, " \t")
			continue
		}
		label, value, ok := strings.Cut(line, ":")
		if !ok {
			errs = append(errs, fmt.Errorf("line %d: no colon after a label", n))
			continue
		}
		if err := checkLabel(label); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		out = append(out, Field{Label: label, Value: strings.TrimLeft(value, " \t")})
	}
	return out, errors.Join(errs...)
}

// Lookup returns the values of every field labelled label, compared without
// regard to case, in file order.
func Lookup(info []Field, label string) []string {
	var out []string
	for _, f := range info {
		if strings.EqualFold(f.Label, label) {
			out = append(out, f.Value)
		}
	}
	return out
}

func checkLabel(label string) error {
	switch {
	case label == "":
		return errors.New("empty label")
	case strings.Trim(label, " \t") != label:
		return fmt.Errorf("label %q starts or ends with whitespace", label)
	case strings.ContainsAny(label, ":\r\n"):
		return fmt.Errorf("label %q contains a colon or line break", label)
	}
	return checkText(label)
}

// checkText refuses what would break a one-line tag file value: invalid
// UTF-8 and control characters (line breaks above all, which could forge
// further fields).
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("contains the control character %U", r)
		}
	}
	return nil
}
