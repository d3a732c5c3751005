package serial

import "errors"

// COBS (consistent overhead byte stuffing, Cheshire and Baker 1999) removes
// every 0x00 from a frame at a cost of one byte per 254, so that 0x00 can
// delimit frames: a receiver that joins mid-frame, or loses bytes to noise,
// is back in step at the next 0x00. It is implemented here rather than taken
// from a module because it is some forty lines, sits on the alarm path, and
// no widely used, maintained Go module offers it; FuzzDecodeFrame covers it.

// Why a run of bytes is not a valid COBS encoding.
var (
	errStuffedZero      = errors.New("0x00 inside a stuffed frame")
	errStuffedTruncated = errors.New("code byte points past the end of the frame")
)

// AppendStuffed appends the COBS encoding of src to dst and returns the
// extended slice. The encoding holds no 0x00 byte and is at most
// len(src)+len(src)/254+1 bytes long.
func AppendStuffed(dst, src []byte) []byte {
	code := len(dst) // index of the current block's code byte
	dst = append(dst, 0)
	n := byte(1) // the code: 1 + data bytes in the block so far
	for i, b := range src {
		if b == 0 {
			dst[code] = n
			code, n = len(dst), 1
			dst = append(dst, 0)
			continue
		}
		dst = append(dst, b)
		n++
		// A full block of 254 bytes has no implicit zero after it; open a
		// new block only if input remains, so the encoding is canonical.
		if n == 0xFF && i+1 < len(src) {
			dst[code] = n
			code, n = len(dst), 1
			dst = append(dst, 0)
		}
	}
	dst[code] = n
	return dst
}

// Unstuff decodes one COBS-encoded run (the bytes between two 0x00
// delimiters, without them) and returns the frame bytes in a new slice.
func Unstuff(src []byte) ([]byte, error) {
	dst, err := unstuff(src)
	if err != nil {
		return nil, err
	}
	return dst, nil
}

// unstuff is Unstuff, but on error it also returns what it decoded up to the
// fault: the start of a truncated frame still names its device.
func unstuff(src []byte) ([]byte, error) {
	dst := make([]byte, 0, len(src))
	for i := 0; i < len(src); {
		code := int(src[i])
		if code == 0 {
			return dst, errStuffedZero
		}
		i++
		end := i + code - 1
		if end > len(src) {
			return append(dst, src[i:]...), errStuffedTruncated
		}
		for j, b := range src[i:end] {
			if b == 0 {
				return append(dst, src[i:i+j]...), errStuffedZero
			}
		}
		dst = append(dst, src[i:end]...)
		i = end
		// Every block but a full one (code 0xFF) and the last stands for
		// its data followed by a zero.
		if code != 0xFF && i < len(src) {
			dst = append(dst, 0)
		}
	}
	return dst, nil
}
