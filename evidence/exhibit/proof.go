package exhibit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/vigil-gw/vigil/evidence/ledger"
)

// proofFile is proofs/<camera>/<clip>.json: everything needed to tie one
// clip to the signed checkpoint, in a form a person can read and any JSON
// tool can extract (`jq -j .body` gives the exact entry body bytes).
type proofFile struct {
	// Camera and Clip name the clip; File is its payload path.
	Camera string `json:"camera"`
	Clip   string `json:"clip"`
	File   string `json:"file"`
	// Body is the canonical ledger entry body, exactly the bytes hashed.
	Body string `json:"body"`
	// LeafHash is SHA-256(0x00 || body) in hex: the entry hash.
	LeafHash string `json:"leaf_hash"`
	// Index is the entry's position in the log (its leaf index) and
	// TreeSize the size of the checkpoint's tree.
	Index    uint64 `json:"index"`
	TreeSize uint64 `json:"tree_size"`
	// Hashes is the RFC 6962 inclusion proof, in hex, leaf to root.
	Hashes []string `json:"hashes"`
}

// encodeProof writes a proof file: indented JSON with HTML characters left
// as they are, and a final newline. It is the only encoding parseProof
// accepts, so two tools can never read one proof file two ways.
func encodeProof(p proofFile) ([]byte, error) {
	if p.Hashes == nil {
		p.Hashes = []string{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// parseProof reads a proof file strictly: known fields only, one JSON
// value, well-formed ids and hashes, and byte for byte the encoding
// encodeProof gives.
func parseProof(b []byte) (proofFile, ledger.Proof, error) {
	var p proofFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, ledger.Proof{}, fmt.Errorf("not a proof file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return p, ledger.Proof{}, errors.New("not a proof file: data after the JSON object")
	}
	switch {
	case !ledger.ValidCameraID(p.Camera):
		return p, ledger.Proof{}, fmt.Errorf("camera %q is not a valid device id", p.Camera)
	case !ledger.ValidClipID(p.Clip):
		return p, ledger.Proof{}, fmt.Errorf("clip %q is not a valid clip id", p.Clip)
	case p.File != dataDir+p.Camera+"/"+p.Clip:
		return p, ledger.Proof{}, fmt.Errorf("file %q is not %s", p.File, dataDir+p.Camera+"/"+p.Clip)
	case p.Body == "":
		return p, ledger.Proof{}, errors.New("body is empty")
	case !ledger.ValidSHA256(p.LeafHash):
		return p, ledger.Proof{}, fmt.Errorf("leaf_hash %q is not 64 lowercase hex digits", p.LeafHash)
	case p.Index >= p.TreeSize:
		return p, ledger.Proof{}, fmt.Errorf("index %d is not inside a tree of size %d", p.Index, p.TreeSize)
	}
	pr := ledger.Proof{Index: p.Index, Size: p.TreeSize, Hashes: make([][]byte, len(p.Hashes))}
	for i, h := range p.Hashes {
		if !ledger.ValidSHA256(h) {
			return p, ledger.Proof{}, fmt.Errorf("hashes[%d] %q is not 64 lowercase hex digits", i, h)
		}
		pr.Hashes[i], _ = hex.DecodeString(h)
	}
	canon, err := encodeProof(p)
	if err != nil || !bytes.Equal(canon, b) {
		return p, ledger.Proof{}, errors.New("not in the exact form Vigil writes (reformatted or edited)")
	}
	return p, pr, nil
}
