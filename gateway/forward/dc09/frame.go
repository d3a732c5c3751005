package dc09

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Frame is one DC-09 message: an event report, a link test, or a receiver's
// response. Encode writes it to the wire form and ParseFrame reads it back.
type Frame struct {
	// ID is the token between the quotes without the encryption '*':
	// "SIA-DCS", "ADM-CID", "NULL", or the responses "ACK", "NAK", "DUH".
	ID string
	// Encrypted reports whether the frame was read encrypted ('*' before the
	// ID). Encode ignores it: the key passed to Encode decides.
	Encrypted bool
	// Seq is the link sequence number, 1–9999; a NAK may carry 0.
	Seq int
	// Receiver is the receiver number (1–6 hex digits), "" when absent.
	Receiver string
	// Prefix is the account prefix (line) number (1–6 hex digits), "" when absent.
	Prefix string
	// Account is the account number, 3–16 hex digits. Only a NAK may have
	// none, as in the standard's own example "NAK"0000R0L0A0[]_20:14:12,10-20-2006
	// (there "L0A0" is the prefix 0A0, and no '#' follows).
	Account string
	// Data is the content of the first bracket pair, for example
	// "#1234|1121 01 005"; it may be empty.
	Data string
	// XData holds the extended data fields after Data, each without its
	// brackets, for example "X-1.234567".
	XData []string
	// Timestamp is the frame's UTC timestamp, to the second; it is meaningful
	// only when HasTimestamp is true.
	Timestamp time.Time
	// HasTimestamp reports whether the frame carries a _timestamp. Encrypted
	// frames always do.
	HasTimestamp bool
}

// Frame ID tokens defined by DC-09.
const (
	IDSIADCS = "SIA-DCS"
	IDADMCID = "ADM-CID"
	IDNull   = "NULL"
	IDACK    = "ACK"
	IDNAK    = "NAK"
	IDDUH    = "DUH"
)

// MaxFrameSize is the longest frame, <LF> to <CR>, that the 4-hex-digit LEN
// field can describe.
const MaxFrameSize = frameOverhead + 0xFFFF

const (
	// frameOverhead is LF, CRC, LEN and CR around the CRC-covered region.
	frameOverhead = 1 + 4 + 4 + 1
	// timestampLen is the length of the DC-09 time format, always UTC.
	timestampLen = len("HH:MM:SS,MM-DD-YYYY")
)

// FieldError reports which field of a frame is wrong and why. Every error from
// ParseFrame and Encode is a *FieldError, so callers can count rejections by
// field with errors.As.
type FieldError struct {
	Field   string // "lf", "cr", "crc", "len", "id", "seq", "receiver", "prefix", "account", "data", "xdata", "timestamp", "body", "key", "frame"
	Problem string // what is wrong, for a person to read
	Err     error  // the underlying cause, if any
}

// Error formats the error as "dc09: <field>: <problem>[: <cause>]".
func (e *FieldError) Error() string {
	if e.Err != nil {
		return "dc09: " + e.Field + ": " + e.Problem + ": " + e.Err.Error()
	}
	return "dc09: " + e.Field + ": " + e.Problem
}

// Unwrap returns the underlying cause.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// CRC16 returns the CRC-16/ARC of b (reflected polynomial 0xA001, initial
// value 0, no final xor), the checksum DC-09 puts in front of every frame.
func CRC16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// Encode returns the frame in wire form, from <LF> to <CR>. With a nil key the
// frame is sent in clear; with a 16, 24 or 32-byte key everything after the
// data's opening bracket is AES-CBC encrypted and the ID gets a leading '*'.
// Encrypted frames must have a timestamp.
func (f Frame) Encode(key []byte) ([]byte, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	var region bytes.Buffer
	region.Grow(64 + len(f.Data) + 16*len(f.XData))
	region.WriteByte('"')
	if key != nil {
		region.WriteByte('*')
	}
	region.WriteString(f.ID)
	region.WriteByte('"')
	fmt.Fprintf(&region, "%04d", f.Seq)
	if f.Receiver != "" {
		region.WriteString("R" + f.Receiver)
	}
	if f.Prefix != "" {
		region.WriteString("L" + f.Prefix)
	}
	if f.Account != "" || f.ID != IDNAK {
		region.WriteString("#" + f.Account)
	}
	region.WriteByte('[')

	var body bytes.Buffer // what follows the data's '['
	body.WriteString(f.Data)
	body.WriteByte(']')
	for _, x := range f.XData {
		body.WriteString("[" + x + "]")
	}
	if f.HasTimestamp {
		body.WriteByte('_')
		body.WriteString(formatTimestamp(f.Timestamp))
	}
	if key == nil {
		region.Write(body.Bytes())
	} else {
		if !f.HasTimestamp {
			return nil, fieldErr("timestamp", "an encrypted frame must have a timestamp")
		}
		ct, err := encrypt(key, body.Bytes())
		if err != nil {
			return nil, err
		}
		region.WriteString(strings.ToUpper(hex.EncodeToString(ct)))
	}
	if region.Len() > 0xFFFF {
		return nil, fieldErr("len", "frame is %d bytes, longer than the 65535 LEN allows", region.Len())
	}
	out := make([]byte, 0, frameOverhead+region.Len())
	out = append(out, '\n')
	out = fmt.Appendf(out, "%04X%04X", CRC16(region.Bytes()), region.Len())
	out = append(out, region.Bytes()...)
	out = append(out, '\r')
	return out, nil
}

// validate checks every field Encode writes, so that Encode never produces a
// frame ParseFrame would refuse.
func (f Frame) validate() error {
	if err := checkID(f.ID); err != nil {
		return err
	}
	if err := checkSeq(f.Seq, f.ID); err != nil {
		return err
	}
	if f.Receiver != "" {
		if err := checkHex("receiver", f.Receiver, 1, 6); err != nil {
			return err
		}
	}
	if f.Prefix != "" {
		if err := checkHex("prefix", f.Prefix, 1, 6); err != nil {
			return err
		}
	}
	if f.Account != "" || f.ID != IDNAK {
		if err := checkHex("account", f.Account, 3, 16); err != nil {
			return err
		}
	}
	if err := checkText("data", f.Data, true); err != nil {
		return err
	}
	for i, x := range f.XData {
		if err := checkText("xdata", x, false); err != nil {
			err.Problem = fmt.Sprintf("field %d: %s", i+1, err.Problem)
			return err
		}
	}
	if f.HasTimestamp {
		if y := f.Timestamp.UTC().Year(); y < 0 || y > 9999 {
			return fieldErr("timestamp", "year %d does not fit in 4 digits", y)
		}
	}
	return nil
}

// ParseFrame reads exactly one frame, from <LF> to <CR>, checking its CRC, LEN
// and every field. key decrypts frames whose ID starts with '*'; clear frames
// are accepted with or without a key. On error the returned Frame holds the
// fields read before the problem was found (a receiver uses them to answer),
// and the error is a *FieldError naming the field. ParseFrame never panics.
func ParseFrame(b []byte, key []byte) (Frame, error) {
	var f Frame
	if len(b) < frameOverhead {
		return f, fieldErr("frame", "%d bytes is shorter than the %d-byte minimum", len(b), frameOverhead)
	}
	if b[0] != '\n' {
		return f, fieldErr("lf", "frame starts with %q, not <LF>", b[0])
	}
	if b[len(b)-1] != '\r' {
		return f, fieldErr("cr", "frame ends with %q, not <CR>", b[len(b)-1])
	}
	crcText, lenText, region := b[1:5], b[5:9], b[9:len(b)-1]
	wantCRC, ok := parseHex4(crcText)
	if !ok {
		return f, fieldErr("crc", "%q is not 4 hex digits", crcText)
	}
	wantLen, ok := parseHex4(lenText)
	if !ok {
		return f, fieldErr("len", "%q is not 4 hex digits", lenText)
	}
	if int(wantLen) != len(region) {
		return f, fieldErr("len", "frame says %04X, region is %04X bytes", wantLen, len(region))
	}
	if got := CRC16(region); got != wantCRC {
		return f, fieldErr("crc", "frame says %04X, computed %04X", wantCRC, got)
	}

	p := region
	// "ID"
	if len(p) == 0 || p[0] != '"' {
		return f, fieldErr("id", "region does not start with '\"'")
	}
	end := bytes.IndexByte(p[1:], '"')
	if end < 0 {
		return f, fieldErr("id", "no closing '\"'")
	}
	id := string(p[1 : 1+end])
	p = p[2+end:]
	if strings.HasPrefix(id, "*") {
		f.Encrypted = true
		id = id[1:]
	}
	if err := checkID(id); err != nil {
		return f, err
	}
	f.ID = id

	// SEQ: exactly 4 decimal digits.
	if len(p) < 4 || !allDigits(p[:4]) {
		return f, fieldErr("seq", "%q is not 4 decimal digits", head(p, 4))
	}
	seq, _ := strconv.Atoi(string(p[:4]))
	p = p[4:]
	if err := checkSeq(seq, f.ID); err != nil {
		return f, err
	}
	f.Seq = seq

	// Rrcvr, Lpref: optional, 1–6 hex digits each.
	if len(p) > 0 && p[0] == 'R' {
		n := hexRun(p[1:])
		if n < 1 || n > 6 {
			return f, fieldErr("receiver", "R must be followed by 1–6 hex digits, found %d", n)
		}
		f.Receiver = string(p[1 : 1+n])
		p = p[1+n:]
	}
	if len(p) > 0 && p[0] == 'L' {
		n := hexRun(p[1:])
		if n < 1 || n > 6 {
			return f, fieldErr("prefix", "L must be followed by 1–6 hex digits, found %d", n)
		}
		f.Prefix = string(p[1 : 1+n])
		p = p[1+n:]
	}

	// #acct; a NAK may have none (see Frame.Account).
	switch {
	case len(p) > 0 && p[0] == '#':
		n := hexRun(p[1:])
		if n < 3 || n > 16 {
			return f, fieldErr("account", "must be 3–16 hex digits, found %d", n)
		}
		f.Account = string(p[1 : 1+n])
		p = p[1+n:]
	case f.ID == IDNAK && len(p) > 0 && p[0] == '[':
	default:
		return f, fieldErr("account", "expected '#' and the account, found %q", head(p, 8))
	}

	if len(p) == 0 || p[0] != '[' {
		return f, fieldErr("data", "expected '[' after the account, found %q", head(p, 8))
	}
	p = p[1:]
	if f.Encrypted {
		if key == nil {
			return f, fieldErr("key", "frame is encrypted but no key is configured")
		}
		plain, err := decryptHex(key, p)
		if err != nil {
			return f, err
		}
		bar := bytes.IndexByte(plain, '|')
		if bar < 0 {
			return f, fieldErr("data", "decrypted text has no '|' after the pad (wrong key?)")
		}
		if i := bytes.IndexAny(plain[:bar], "[]"); i >= 0 {
			return f, fieldErr("data", "pad contains %q (wrong key?)", plain[i])
		}
		p = plain[bar+1:]
	}
	if err := parseBody(&f, p); err != nil {
		if f.Encrypted {
			// Text decrypted under the wrong key is noise that can pass the
			// pad check by chance and then fail anywhere in the body; name
			// the likely cause, not wherever the noise happened to break.
			return f, fieldErr("data", "decrypted text is not a valid body (wrong key?): %v", err)
		}
		return f, err
	}
	if f.Encrypted && !f.HasTimestamp {
		return f, fieldErr("timestamp", "missing in an encrypted frame (wrong key?)")
	}
	return f, nil
}

// parseBody reads data], then [xdata]..., then an optional _timestamp, which
// must end the region.
func parseBody(f *Frame, p []byte) error {
	end := bytes.IndexByte(p, ']')
	if end < 0 {
		return fieldErr("data", "no closing ']'")
	}
	data := string(p[:end])
	if err := checkText("data", data, true); err != nil {
		return err
	}
	f.Data = data
	p = p[end+1:]
	for len(p) > 0 && p[0] == '[' {
		end := bytes.IndexByte(p, ']')
		if end < 0 {
			return fieldErr("xdata", "field %d has no closing ']'", len(f.XData)+1)
		}
		x := string(p[1:end])
		if err := checkText("xdata", x, false); err != nil {
			err.Problem = fmt.Sprintf("field %d: %s", len(f.XData)+1, err.Problem)
			return err
		}
		f.XData = append(f.XData, x)
		p = p[end+1:]
	}
	if len(p) == 0 {
		return nil
	}
	if p[0] != '_' {
		return fieldErr("body", "unexpected %q after the data", head(p, 8))
	}
	ts, err := parseTimestamp(p[1:])
	if err != nil {
		return err
	}
	f.Timestamp, f.HasTimestamp = ts, true
	return nil
}

func checkID(id string) error {
	if id == "" || len(id) > 16 {
		return fieldErr("id", "token must be 1–16 characters, got %d", len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fieldErr("id", "token %q contains %q; only A–Z, 0–9 and '-' are allowed", id, c)
		}
	}
	return nil
}

func checkSeq(seq int, id string) error {
	if seq == 0 && id == IDNAK {
		return nil
	}
	if seq < 1 || seq > 9999 {
		return fieldErr("seq", "%04d is outside 0001–9999", seq)
	}
	return nil
}

func checkHex(field, s string, minLen, maxLen int) error {
	if len(s) < minLen || len(s) > maxLen {
		return fieldErr(field, "must be %d–%d hex digits, got %d characters", minLen, maxLen, len(s))
	}
	if n := hexRun([]byte(s)); n != len(s) {
		return fieldErr(field, "%q is not hex (character %d)", s, n+1)
	}
	return nil
}

// checkText accepts what may stand inside a bracket pair: no control
// characters (so no <CR> or <LF>), no brackets. Bytes above 0x7F are allowed
// because panels send Windows-1252 text.
func checkText(field, s string, allowEmpty bool) *FieldError {
	if s == "" && !allowEmpty {
		return fieldErr(field, "is empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7F || c == '[' || c == ']' {
			return fieldErr(field, "contains %q at byte %d", c, i+1)
		}
	}
	return nil
}

func formatTimestamp(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%02d:%02d:%02d,%02d-%02d-%04d",
		t.Hour(), t.Minute(), t.Second(), int(t.Month()), t.Day(), t.Year())
}

// parseTimestamp reads exactly "HH:MM:SS,MM-DD-YYYY" and rejects impossible
// dates rather than letting time.Date normalise them.
func parseTimestamp(p []byte) (time.Time, error) {
	if len(p) != timestampLen {
		return time.Time{}, fieldErr("timestamp", "%q is not HH:MM:SS,MM-DD-YYYY", head(p, 24))
	}
	const layout = "dd:dd:dd,dd-dd-dddd"
	for i := 0; i < len(layout); i++ {
		if layout[i] == 'd' && (p[i] < '0' || p[i] > '9') || layout[i] != 'd' && p[i] != layout[i] {
			return time.Time{}, fieldErr("timestamp", "%q is not HH:MM:SS,MM-DD-YYYY", p)
		}
	}
	num := func(s []byte) int { n, _ := strconv.Atoi(string(s)); return n }
	hh, mi, ss := num(p[0:2]), num(p[3:5]), num(p[6:8])
	mo, dd, yy := num(p[9:11]), num(p[12:14]), num(p[15:19])
	t := time.Date(yy, time.Month(mo), dd, hh, mi, ss, 0, time.UTC)
	if hh > 23 || mi > 59 || ss > 59 || mo < 1 || mo > 12 || t.Day() != dd || int(t.Month()) != mo {
		return time.Time{}, fieldErr("timestamp", "%q is not a valid time", p)
	}
	return t, nil
}

func parseHex4(b []byte) (uint16, bool) {
	if len(b) != 4 || hexRun(b) != 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b), 16, 16)
	return uint16(v), err == nil
}

// hexRun returns how many leading bytes of b are hex digits.
func hexRun(b []byte) int {
	for i, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f') {
			return i
		}
	}
	return len(b)
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// head returns at most n leading bytes of b, for error messages.
func head(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// isFraming reports whether err says the frame was damaged in transit (bad
// CRC, LEN or delimiters), as opposed to an intact frame with bad content.
func isFraming(err error) bool {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return false
	}
	switch fe.Field {
	case "lf", "cr", "crc", "len", "frame":
		return true
	}
	return false
}
