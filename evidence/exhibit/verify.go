package exhibit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/bagit"
	"github.com/vigil-gw/vigil/evidence/ledger"
)

// Options tune Verify.
type Options struct {
	// PubKey is the gateway's verifier key obtained independently of the
	// package ("<name>+<hash>+<key>"). Empty means only the key embedded in
	// the package (gateway.pub) is used, and the report says so.
	PubKey string
	// Progress, when set, is called as the package is read, with the bytes
	// done and the total.
	Progress func(done, total int64)
}

// ClipResult is what Verify found for one clip.
type ClipResult struct {
	// Camera and Clip identify the clip; File is its path in the bag.
	Camera, Clip, File string
	// The fields below come from the clip's ledger entry body (zero when
	// the proof file could not be read).
	Wearer, Site string
	Start, End   time.Time
	Size         int64
	SHA256       string
	Received     time.Time
	Ingest       string
	// ClockUnsynchronised is the entry's mark that the gateway's clock was
	// not synchronised when it took Received.
	ClockUnsynchronised bool
	// Index is the entry's position in the ledger.
	Index uint64
	// Steps counts the continuity steps recorded.
	Steps int
	// Proved reports that the inclusion proof leads to the root of a
	// checkpoint whose signature verified with the trusted key.
	Proved bool
	// OK reports that no problem names the clip's files. Problems with the
	// package as a whole (signatures, the key) are not counted here: only
	// Report.OK says the package is valid.
	OK bool
}

// Report is the outcome of Verify.
type Report struct {
	// Bag is the bag's name (its directory in the zip).
	Bag string
	// Info is bag-info.txt: exhibit reference, crime reference and so on.
	Info []bagit.Field
	// Key is the verifier key embedded in the package (gateway.pub).
	Key string
	// KeyChecked reports that Options.PubKey was given, is the embedded
	// key, and both the tag manifest and the checkpoint verify with it.
	KeyChecked bool
	// Checkpoint is the signed checkpoint, when its signature verified with
	// the trusted key.
	Checkpoint ledger.Checkpoint
	// Clips are the clips in the package, in bag order.
	Clips []ClipResult
	// Continuity has one readable summary line per clip.
	Continuity []string
	// Passed lists, readably, the checks that passed.
	Passed []string
	// Warnings are limits of what was checked that are not failures, such
	// as a key taken from the package itself.
	Warnings []string
	// Problems lists every check that failed, each naming the file, the
	// clip and the check. Empty means the package verified.
	Problems []string
}

// OK reports whether the package verified: no problem was found.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Verify checks an evidence package read from r (size bytes) with no
// network and nothing but the package and, when given, the independently
// obtained key:
//
//   - the bag (package bagit): safe zip entry names and types, bagit.txt,
//     every clip in both manifests and every listed file present, every
//     digest, Payload-Oxum, every tag file's digest in the tag manifest, and
//     no tag file outside it but the signature;
//   - the tag manifest's signature: with the embedded key, or, when
//     Options.PubKey is given, with that key, after checking that the
//     embedded key is that key (one that is not is reported as such);
//   - the checkpoint's signature, with the same key;
//   - for each clip: a proof file whose entry body is canonical, names the
//     clip, hashes to the stated leaf hash and is included in the
//     checkpoint's tree (ledger.VerifyInclusion); a payload whose size and
//     SHA-256 are those of the entry body; a continuity record; and no proof
//     or record without a clip.
//
// Every failure is a line in Report.Problems naming the file, the clip and
// the check; the error is only for failing to read r or ctx ending.
func Verify(ctx context.Context, r io.ReaderAt, size int64, o Options) (Report, error) {
	var rep Report
	bag, err := bagit.Open(r, size)
	if err != nil {
		var inv *bagit.InvalidError
		if errors.As(err, &inv) {
			for _, p := range inv.Problems {
				rep.Problems = append(rep.Problems, p.String())
			}
			return rep, nil
		}
		return rep, fmt.Errorf("exhibit: verify: %w", err)
	}
	rep.Bag = bag.Name()
	res, err := bag.Validate(ctx, o.Progress)
	if err != nil {
		return rep, fmt.Errorf("exhibit: verify: %w", err)
	}
	v := &verification{rep: &rep, res: res, o: o}
	v.bag()
	v.keys()
	v.signature()
	v.checkpoint()
	v.clips()
	v.rep.KeyChecked = v.given != nil && v.emb != nil && v.givenText == v.embText && v.sigOK && v.cpTrusted
	switch {
	case v.rep.KeyChecked:
		v.pass("the package's key (gateway.pub) is the key given independently, and the tag manifest and checkpoint signatures verify with it")
	case o.PubKey == "":
		v.rep.Warnings = append(v.rep.Warnings, "the gateway key was taken from the package itself (gateway.pub) and was NOT independently checked: "+
			"a forger could have replaced it; verify again with the key obtained from the producing organisation")
	}
	for i := range rep.Clips {
		c := &rep.Clips[i]
		c.OK = true
		for _, p := range rep.Problems {
			for _, path := range []string{c.File, proofsDir + c.Camera + "/" + c.Clip + ".json", continuityDir + c.Camera + "/" + c.Clip + ".txt"} {
				if strings.HasPrefix(p, path+":") || strings.HasPrefix(p, path+" ") {
					c.OK = false
				}
			}
		}
	}
	return rep, nil
}

// verification is the state of one Verify call.
type verification struct {
	rep *Report
	res bagit.Result
	o   Options

	emb, given, trust  note.Verifier
	embText, givenText string
	trustLabel         string

	sigOK     bool
	cp        *ledger.Checkpoint // the checkpoint proofs are checked against
	cpTrusted bool               // cp's signature verified with the trusted key
}

func (v *verification) problem(format string, a ...any) {
	v.rep.Problems = append(v.rep.Problems, fmt.Sprintf(format, a...))
}

func (v *verification) pass(s string) { v.rep.Passed = append(v.rep.Passed, s) }

// bag reports the bagit findings and checks the package's fixed layout.
func (v *verification) bag() {
	for _, p := range v.res.Problems {
		v.rep.Problems = append(v.rep.Problems, p.String())
	}
	v.rep.Info = v.res.Info
	before := len(v.rep.Problems)
	if len(v.res.Problems) == 0 {
		tags := 0
		for _, f := range v.res.Files {
			if !f.Payload && f.Path != bagit.TagManifestSHA256 && f.Path != SignatureFile {
				tags++
			}
		}
		v.pass(fmt.Sprintf("BagIt 1.0 bag %s: safe file names, bagit.txt; %d clip file(s), %d bytes, each listed with a matching digest in %s and %s; Payload-Oxum; %d tag file(s) match %s",
			v.res.Bag, v.res.PayloadFiles, v.res.PayloadOctets, bagit.ManifestSHA256, bagit.ManifestSHA512, tags, bagit.TagManifestSHA256))
	}
	for _, f := range []string{bagit.ManifestSHA256, bagit.ManifestSHA512, bagit.InfoFile, bagit.TagManifestSHA256, SignatureFile, CheckpointFile, KeyFile} {
		if _, ok := v.res.File(f); !ok {
			v.problem("%s: missing from the package", f)
		}
	}
	for _, f := range v.res.TagManifests {
		if f != bagit.TagManifestSHA256 {
			v.problem("%s: a second tag manifest, which the signature does not cover: it was added after the package was made", f)
		}
	}
	for _, f := range v.res.Unlisted {
		if f != SignatureFile {
			v.problem("%s: not listed in %s, so the signature does not cover it: it was added after the package was made", display(f), bagit.TagManifestSHA256)
		}
	}
	if len(v.rep.Problems) == before && len(v.res.Problems) == 0 {
		v.pass("no file is outside the signed tag manifest except its signature")
	}
}

// keys reads the embedded key and the given one, and picks the one to trust.
func (v *verification) keys() {
	if data, ok := v.res.Tag(KeyFile); ok {
		v.embText = strings.TrimSpace(string(data))
		v.rep.Key = v.embText
		emb, err := note.NewVerifier(v.embText)
		if err != nil {
			v.problem("%s: not a note verifier key (%v)", KeyFile, err)
		} else {
			v.emb = emb
		}
	}
	if v.o.PubKey == "" {
		v.trust, v.trustLabel = v.emb, "embedded key "+v.embText
		return
	}
	v.givenText = strings.TrimSpace(v.o.PubKey)
	given, err := note.NewVerifier(v.givenText)
	if err != nil {
		v.problem("the key given to check against (%q) is not a note verifier key (%v): no signature could be checked with it", v.givenText, err)
		return
	}
	v.given, v.trust, v.trustLabel = given, given, "given key "+v.givenText
	if v.emb != nil && v.embText != v.givenText {
		v.problem("%s: the package's key %s is not the key given independently (%s): the package was signed by another key, or its key was replaced", KeyFile, v.embText, v.givenText)
	}
}

// describeNote turns note.Open's errors into what the reader should conclude.
func describeNote(err error, label string) string {
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		var by []string
		for _, s := range unverified.Note.UnverifiedSigs {
			by = append(by, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
		}
		return fmt.Sprintf("not signed by the %s (signed only by %s)", label, strings.Join(by, ", "))
	case errors.As(err, &invalid):
		return fmt.Sprintf("the signature by %s+%08x does not match the signed text: it was altered after signing", invalid.Name, invalid.Hash)
	default:
		return fmt.Sprintf("not a well-formed signed note (%v)", err)
	}
}

// signature checks tagmanifest-sha256.txt.sig.
func (v *verification) signature() {
	sig, ok := v.res.Tag(SignatureFile)
	if !ok {
		return // missing or unreadable: already a problem
	}
	tm, ok := v.res.File(bagit.TagManifestSHA256)
	if !ok || tm.Digests == nil {
		return
	}
	if v.trust == nil {
		v.problem("%s: signature not checked: there is no valid key to check it with", SignatureFile)
		return
	}
	n, err := note.Open(sig, note.VerifierList(v.trust))
	if err != nil {
		v.problem("%s: %s", SignatureFile, describeNote(err, v.trustLabel))
		return
	}
	digest := tm.Digests[bagit.SHA256]
	want := signedText(v.rep.Bag, digest)
	if n.Text == want {
		v.sigOK = true
		v.pass(fmt.Sprintf("%s: signed by %s+%08x over %s (SHA-256 %s) for bag %s", SignatureFile, v.trust.Name(), v.trust.KeyHash(), bagit.TagManifestSHA256, digest, v.rep.Bag))
		return
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	switch {
	case len(lines) != 3 || lines[0] != sigHeader:
		v.problem("%s: the signed text is not a Vigil tag manifest signature: %q", SignatureFile, n.Text)
	case lines[1] != "bag "+v.rep.Bag:
		v.problem("%s: signed for %q, but this bag is %q: the bag was renamed", SignatureFile, strings.TrimPrefix(lines[1], "bag "), v.rep.Bag)
	default:
		got, _, _ := strings.Cut(lines[2], " ")
		v.problem("%s: the signed SHA-256 of %s is %s, but the file's SHA-256 is %s: the tag manifest was changed after it was signed", SignatureFile, bagit.TagManifestSHA256, got, digest)
	}
}

// checkpoint checks checkpoint.txt's signature.
func (v *verification) checkpoint() {
	data, ok := v.res.Tag(CheckpointFile)
	if !ok {
		return
	}
	if v.trust != nil {
		cp, err := ledger.ParseCheckpoint(data, v.trust)
		if err == nil {
			v.cp, v.cpTrusted = &cp, true
			v.rep.Checkpoint = cp
			v.pass(fmt.Sprintf("%s: signed by %s+%08x: ledger %s, %d entries, signed %s", CheckpointFile, v.trust.Name(), v.trust.KeyHash(), cp.Origin, cp.Size, fmtTime(cp.Time)))
			return
		}
		v.problem("%s: %s (checked with the %s)", CheckpointFile, strings.TrimPrefix(err.Error(), "ledger: parse checkpoint: "), v.trustLabel)
	} else {
		v.problem("%s: signature not checked: there is no valid key to check it with", CheckpointFile)
	}
	// The proofs can still be checked against the root the package's own key
	// signed, so that each clip's findings are reported; the checkpoint is
	// already a problem.
	if v.emb != nil && v.emb != v.trust {
		if cp, err := ledger.ParseCheckpoint(data, v.emb); err == nil {
			v.cp = &cp
		}
	}
}

// clipKey splits "<dir><camera>/<clip><suffix>" into camera and clip.
func clipKey(path, dir, suffix string) (camera, clip string, ok bool) {
	rest, ok := strings.CutPrefix(path, dir)
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, suffix)
	if !ok {
		return "", "", false
	}
	camera, clip, ok = strings.Cut(rest, "/")
	if !ok || !ledger.ValidCameraID(camera) || !ledger.ValidClipID(clip) {
		return "", "", false
	}
	return camera, clip, true
}

// clips checks every clip against its proof and the checkpoint.
func (v *verification) clips() {
	proofs := map[string]string{} // camera/clip → path
	records := map[string]string{}
	for _, f := range v.res.Files {
		switch {
		case strings.HasPrefix(f.Path, proofsDir):
			if cam, clip, ok := clipKey(f.Path, proofsDir, ".json"); ok {
				proofs[cam+"/"+clip] = f.Path
			} else {
				v.problem("%s: not a proof file name (proofs/<camera>/<clip>.json)", display(f.Path))
			}
		case strings.HasPrefix(f.Path, continuityDir):
			if cam, clip, ok := clipKey(f.Path, continuityDir, ".txt"); ok {
				records[cam+"/"+clip] = f.Path
			} else {
				v.problem("%s: not a continuity record name (continuity/<camera>/<clip>.txt)", display(f.Path))
			}
		}
	}
	before := len(v.rep.Problems)
	clips := map[string]bool{}
	proved := 0
	for _, f := range v.res.Files {
		if !f.Payload {
			continue
		}
		cam, clip, ok := clipKey(f.Path, dataDir, "")
		if !ok {
			v.problem("%s: not a clip file: clips are data/<camera>/<clip> with valid camera and clip ids", display(f.Path))
			continue
		}
		key := cam + "/" + clip
		clips[key] = true
		cr := v.clip(f, cam, clip, proofs[key], records[key])
		if cr.Proved {
			proved++
		}
		v.rep.Clips = append(v.rep.Clips, cr)
	}
	for key, path := range proofs {
		if !clips[key] {
			v.problem("%s: proof of clip %s, which is not in the package (%s%s is missing)", path, key, dataDir, key)
		}
	}
	for key, path := range records {
		if !clips[key] {
			v.problem("%s: continuity record of clip %s, which is not in the package (%s%s is missing)", path, key, dataDir, key)
		}
	}
	if len(v.rep.Clips) == 0 {
		v.problem("%s: the package holds no clips", dataDir)
	}
	if v.cp == nil && len(v.rep.Clips) > 0 {
		v.problem("%s: inclusion proofs not checked: there is no checkpoint with a valid signature", proofsDir)
	}
	if len(v.rep.Problems) == before && v.cp != nil {
		v.pass(fmt.Sprintf("each of the %d clip(s) has a proof and a continuity record, and every proof and record has its clip", len(v.rep.Clips)))
		v.pass("each clip's size and SHA-256 are those of its ledger entry")
		if proved == len(v.rep.Clips) {
			v.pass(fmt.Sprintf("each clip's ledger entry is included in the signed checkpoint (RFC 6962 inclusion proof to the root of %d entries)", v.cp.Size))
		}
	}
}

// clip checks one clip.
func (v *verification) clip(f bagit.File, cam, clip, proofPath, recordPath string) ClipResult {
	key := cam + "/" + clip
	cr := ClipResult{Camera: cam, Clip: clip, File: f.Path}
	if recordPath == "" {
		v.problem("%s: no continuity record (%s%s.txt is missing)", f.Path, continuityDir, key)
	} else if text, ok := v.res.Tag(recordPath); ok {
		steps := parseSteps(text)
		cr.Steps = len(steps)
		v.rep.Continuity = append(v.rep.Continuity, key+": "+summarise(steps))
	}
	if proofPath == "" {
		v.problem("%s: no proof (%s%s.json is missing): the clip cannot be tied to the ledger", f.Path, proofsDir, key)
		return cr
	}
	data, ok := v.res.Tag(proofPath)
	if !ok {
		return cr // unreadable: already a problem
	}
	pf, proof, err := parseProof(data)
	if err != nil {
		v.problem("%s: %v", proofPath, err)
		return cr
	}
	if pf.Camera != cam || pf.Clip != clip {
		v.problem("%s: names clip %s/%s, not %s", proofPath, pf.Camera, pf.Clip, key)
		return cr
	}
	body := []byte(pf.Body)
	entry, _, err := ledger.ParseBody(body)
	if err != nil {
		v.problem("%s: the body is not a canonical ledger entry (%v)", proofPath, err)
		return cr
	}
	if entry.Camera != cam || entry.Clip != clip {
		v.problem("%s: the body is the ledger entry of clip %s/%s, not of %s", proofPath, entry.Camera, entry.Clip, key)
		return cr
	}
	cr.Wearer, cr.Site, cr.Start, cr.End = entry.Wearer, entry.Site, entry.Start, entry.End
	cr.Size, cr.SHA256, cr.Received, cr.Ingest, cr.Index = entry.Size, entry.SHA256, entry.Received, entry.Ingest, proof.Index
	cr.ClockUnsynchronised = entry.ClockUnsynchronised
	if leaf := hex.EncodeToString(ledger.LeafHash(body)); leaf != pf.LeafHash {
		v.problem("%s: leaf_hash %s is not the hash of the body (%s)", proofPath, pf.LeafHash, leaf)
	}
	if v.cp != nil {
		if err := ledger.VerifyInclusion(body, proof, *v.cp); err != nil {
			v.problem("%s: the inclusion proof of ledger entry %d does not lead to the root signed in %s (%s): the entry or the proof was altered",
				proofPath, proof.Index, CheckpointFile, strings.TrimPrefix(err.Error(), "ledger: "))
		} else {
			cr.Proved = v.cpTrusted
		}
	}
	if f.Digests != nil {
		if f.Size != entry.Size {
			v.problem("%s: the clip is %d bytes but its ledger entry (%s) records %d bytes: this is not the clip the gateway recorded", f.Path, f.Size, proofPath, entry.Size)
		}
		if got := f.Digests[bagit.SHA256]; got != entry.SHA256 {
			v.problem("%s: the clip's SHA-256 is %s but its ledger entry (%s) records %s: this is not the clip the gateway recorded", f.Path, got, proofPath, entry.SHA256)
		}
	}
	return cr
}

// display quotes a path that a terminal could misread.
func display(p string) string { return bagit.QuotePath(p) }
