package objstore

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// pattern is a deterministic io.ReaderAt of any size that holds only one
// block in memory, so tests can upload objects far larger than they could
// afford to buffer. The period is not a power of two, so no two parts of an
// object have the same bytes.
type pattern struct {
	size  int64
	block []byte
}

func newPattern(size int64, seed uint64) *pattern {
	block := make([]byte, 1<<20+13)
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1, 2, 3}))
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	return &pattern{size: size, block: block}
}

func (p *pattern) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(b) && off < p.size {
		i := off % int64(len(p.block))
		k := copy(b[n:], p.block[i:min(int64(len(p.block)), i+p.size-off)])
		n += k
		off += int64(k)
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// sum is the SHA-256 of the whole pattern.
func (p *pattern) sum(t testing.TB) string {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(p, 0, p.size)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// counter wraps a ReaderAt and counts the bytes read from each part-sized
// region, to show which parts an upload read.
type counter struct {
	r        io.ReaderAt
	partSize int64
	mu       sync.Mutex
	perPart  map[int]int64 // 1-based part number -> bytes read
}

func newCounter(r io.ReaderAt, partSize int64) *counter {
	return &counter{r: r, partSize: partSize, perPart: map[int]int64{}}
}

func (c *counter) ReadAt(b []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(b, off)
	c.mu.Lock()
	for done := int64(0); done < int64(n); {
		part := (off + done) / c.partSize
		end := min((part+1)*c.partSize, off+int64(n))
		c.perPart[int(part)+1] += end - (off + done)
		done = end - off
	}
	c.mu.Unlock()
	return n, err
}

func (c *counter) read(part int) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.perPart[part]
}

func (c *counter) reset() {
	c.mu.Lock()
	c.perPart = map[int]int64{}
	c.mu.Unlock()
}

// recorder is a Progress that keeps what a caller would persist, and can run
// a hook after each part (to cancel or to stop the server).
type recorder struct {
	mu       sync.Mutex
	uploadID string
	started  int
	parts    []Part
	onPart   func(p Part) error
}

func (r *recorder) Started(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.uploadID = id
	r.started++
	r.parts = nil
	return nil
}

func (r *recorder) PartDone(p Part) error {
	r.mu.Lock()
	r.parts = append(r.parts, p)
	hook := r.onPart
	r.mu.Unlock()
	if hook != nil {
		return hook(p)
	}
	return nil
}

func (r *recorder) resume() Resume {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Resume{UploadID: r.uploadID, Parts: append([]Part(nil), r.parts...)}
}

func (r *recorder) partNumbers() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, p := range r.parts {
		out = append(out, p.Number)
	}
	return out
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
