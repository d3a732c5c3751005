package dc09

import (
	"bufio"
	"errors"
	"io"
)

// errFrameTooLong is returned by frameReader.next for a frame with no <CR>
// within MaxFrameSize bytes; reading can continue after it.
var errFrameTooLong = errors.New("dc09: frame longer than the maximum")

// frameReader splits a TCP byte stream into LF…CR frames. A read may hold
// several frames or part of one; bytes outside frames are skipped, and an <LF>
// inside a frame starts a new one (a valid frame never contains <LF>).
type frameReader struct {
	r   *bufio.Reader
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 4096)}
}

// next returns the next complete frame, <LF> through <CR>. The slice is only
// valid until the following call.
func (fr *frameReader) next() ([]byte, error) {
	fr.buf = fr.buf[:0]
	inFrame := false
	for {
		c, err := fr.r.ReadByte()
		if err != nil {
			return nil, err
		}
		switch {
		case c == '\n':
			fr.buf = append(fr.buf[:0], c)
			inFrame = true
		case !inFrame:
			// Noise between frames.
		case c == '\r':
			fr.buf = append(fr.buf, c)
			return fr.buf, nil
		default:
			fr.buf = append(fr.buf, c)
			if len(fr.buf) >= MaxFrameSize {
				fr.buf = fr.buf[:0]
				return nil, errFrameTooLong
			}
		}
	}
}
