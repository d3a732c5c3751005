package bagit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// checkPath reports why p, a slash-separated path relative to the bag's base
// directory, could not be extracted safely on every platform a defence expert
// might use, or nil. The rules are deliberately stricter than RFC 8493, which
// leaves path safety to implementations: anything that could climb out of the
// extraction directory, name a Windows drive or alternate data stream, or be
// read differently by two tools is refused.
func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case !utf8.ValidString(p):
		return errors.New("path is not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return errors.New("absolute path")
	case strings.Contains(p, `\`):
		return errors.New(`path contains a backslash (\)`)
	case strings.Contains(p, ":"):
		return errors.New("path contains a colon (a drive letter or an alternate data stream on Windows)")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("path contains the control character %U", r)
		}
	}
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "":
			return errors.New("path has an empty element (// or a trailing /)")
		case ".":
			return errors.New(`path has a "." element`)
		case "..":
			return errors.New(`path has a ".." element (it would climb out of the bag)`)
		}
	}
	return nil
}

// checkName reports why name cannot be a bag's directory name, or nil: it is
// one path element under the rules of checkPath.
func checkName(name string) error {
	if err := checkPath(name); err != nil {
		return err
	}
	if strings.Contains(name, "/") {
		return errors.New("a bag name is one directory name, without /")
	}
	return nil
}

// encodePath writes a path for a manifest line. RFC 8493 section 2.1.3
// percent-encodes CR, LF and % so that a path is always one line; checkPath
// already refuses CR and LF, so only % is ever encoded in practice.
func encodePath(p string) string {
	if !strings.ContainsAny(p, "%\r\n") {
		return p
	}
	r := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	return r.Replace(p)
}

// decodePath undoes encodePath. Other percent sequences are left as they are:
// RFC 8493 encodes only these three, so "%41" in a manifest names a file
// called "%41".
func decodePath(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			switch strings.ToUpper(p[i+1 : i+3]) {
			case "25":
				b.WriteByte('%')
				i += 2
				continue
			case "0A":
				b.WriteByte('\n')
				i += 2
				continue
			case "0D":
				b.WriteByte('\r')
				i += 2
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// QuotePath renders a path the way Problem.String does: as it is when it is
// plain, quoted when a terminal could misread it. Callers that write their
// own messages about bag paths use it for the same protection.
func QuotePath(p string) string { return display(p) }

// display renders a path for a message: as it is when it is plain, quoted
// (Go syntax) when it holds spaces, quotes or characters a terminal would
// interpret, so that a hostile name cannot forge or hide report lines.
func display(p string) string {
	if p == "" {
		return `""`
	}
	if !utf8.ValidString(p) {
		return strconv.Quote(p)
	}
	for _, r := range p {
		if r == ' ' || r == '"' || !unicode.IsPrint(r) {
			return strconv.Quote(p)
		}
	}
	return p
}
