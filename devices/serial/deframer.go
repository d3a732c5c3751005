package serial

import "bytes"

// Deframer splits the byte stream of a serial line into runs of bytes between
// 0x00 delimiters, however the stream is cut into reads. Empty runs (two
// delimiters in a row, as every frame starts and ends with one) are skipped.
// A run that grows past MaxWireFrame without a delimiter cannot be a frame: it
// is reported once, as oversize, with its first MaxWireFrame bytes, and the
// rest is discarded up to the next delimiter, so memory stays bounded whatever
// the line carries. The zero value is ready to use; it is not safe for
// concurrent use.
type Deframer struct {
	buf      []byte
	skipping bool // inside an oversize run, discarding up to the next 0x00
	// Discarded counts the bytes of oversize runs thrown away, beyond the
	// first MaxWireFrame that were reported.
	Discarded uint64
}

// Feed consumes p and calls emit for every run it completes, in order. run is
// valid only during the call. oversize says the run is the start of a run too
// long to be a frame, which was discarded.
func (d *Deframer) Feed(p []byte, emit func(run []byte, oversize bool)) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, 0)
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		switch {
		case d.skipping:
			d.Discarded += uint64(len(chunk))
		case len(d.buf)+len(chunk) > MaxWireFrame:
			take := MaxWireFrame - len(d.buf)
			d.buf = append(d.buf, chunk[:take]...)
			d.Discarded += uint64(len(chunk) - take)
			emit(d.buf, true)
			d.buf = d.buf[:0]
			d.skipping = true
		default:
			d.buf = append(d.buf, chunk...)
		}
		if i < 0 {
			return
		}
		// A delimiter: the run (if any) is complete.
		if !d.skipping && len(d.buf) > 0 {
			emit(d.buf, false)
		}
		d.buf = d.buf[:0]
		d.skipping = false
		p = p[i+1:]
	}
}

// Pending is the number of bytes of an incomplete run held back, waiting for
// its delimiter.
func (d *Deframer) Pending() int { return len(d.buf) }
