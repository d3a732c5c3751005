package exhibit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/bagit"
	"github.com/vigil-gw/vigil/evidence/ledger"
)

// File names inside the bag, relative to its directory.
const (
	CheckpointFile = "checkpoint.txt"
	KeyFile        = "gateway.pub"
	StatementFile  = "section9-statement-draft.txt"
	ReadmeFile     = "README.txt"
	SignatureFile  = bagit.TagManifestSHA256 + ".sig"
	proofsDir      = "proofs/"
	continuityDir  = "continuity/"
	dataDir        = "data/"
	bagPrefix      = "vigil-"
	sigHeader      = "vigil-exhibit/v1 tag manifest"
)

// timeLayout is how times are written throughout the package: the ledger's
// own format (UTC, milliseconds), so a time in a statement can be compared
// character for character with the entry body.
const timeLayout = "2006-01-02T15:04:05.000Z"

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// Step is one event in a clip's continuity: captured, received, verified,
// uploaded, accessed (who and why), retention changed, exported.
type Step struct {
	// At is when it happened.
	At time.Time
	// What happened, in a word or two ("captured", "accessed").
	What string
	// Who did it (a person, or the device or service), and in what Role.
	Who, Role string
	// Why: the justification recorded (mandatory for access in Vigil).
	Why string
	// Detail is anything else worth reading (an object key, a retention date).
	Detail string
}

// Clip is one clip to produce, with what ties it to the ledger.
type Clip struct {
	// Camera and Clip identify the clip (ledger rules: device id, clip id);
	// the file is data/<Camera>/<Clip>.
	Camera, Clip string
	// Wearer and Site are as recorded in the ledger entry.
	Wearer, Site string
	// Start and End are the recording times.
	Start, End time.Time
	// Size and SHA256 describe the original bytes.
	Size   int64
	SHA256 string
	// Body is the clip's canonical ledger entry body (ledger.ParseBody reads
	// it); the fields above must agree with it.
	Body []byte
	// Proof is the inclusion proof of Body in the package's Checkpoint.
	Proof ledger.Proof
	// Open returns the original bytes, byte for byte.
	Open func(ctx context.Context) (io.ReadCloser, error)
	// Continuity is the clip's history up to this export, oldest first;
	// Build adds the export step. It is given to the police as it is, so
	// it must not name other wearers or their footage.
	Continuity []Step
}

// Package is everything Build needs for one exhibit.
type Package struct {
	// SourceOrganization (the Trust), and whom to contact about the package.
	SourceOrganization, ContactName, ContactEmail string
	// ExhibitRef is the exhibit reference (e.g. "JS/1"), CrimeRef the crime
	// reference or URN, Officer and Force the requesting officer and force,
	// Incident the Trust's incident reference (optional), RequestID the
	// release request's id (it names the bag: "vigil-<RequestID>").
	ExhibitRef, CrimeRef, Officer, Force, Incident, RequestID string
	// RequestedBy and ApprovedBy are the two different people who asked for
	// and approved the release.
	RequestedBy, ApprovedBy string
	// Bagged is when the package is made.
	Bagged time.Time
	// Clips are produced in this order.
	Clips []Clip
	// Checkpoint is the signed checkpoint note every clip's proof leads to.
	Checkpoint []byte
	// PublicKey is the gateway's note verifier key (ledger.VerifierKey).
	PublicKey string
	// Signer is the gateway key; it signs the tag manifest.
	Signer note.Signer
}

// prepared is a Package that passed every check, with what was derived.
type prepared struct {
	Package
	bag      string
	cp       ledger.Checkpoint
	verifier note.Verifier
	clips    []preparedClip
}

type preparedClip struct {
	Clip
	entry ledger.Clip
	prev  string
	steps []Step // Continuity plus the export step
}

func (c preparedClip) key() string       { return c.Camera + "/" + c.Clip.Clip }
func (c preparedClip) dataPath() string  { return dataDir + c.key() }
func (c preparedClip) proofPath() string { return proofsDir + c.key() + ".json" }
func (c preparedClip) contPath() string  { return continuityDir + c.key() + ".txt" }

// Build writes the evidence package for p to w as a zip (see the package
// documentation for its layout).
//
// Everything that can be checked before any byte is written is checked
// first, and Build refuses rather than produce a package that would not
// verify: required fields, one-line values, ids that are valid file names
// (an invalid id is refused, never altered), the signer against PublicKey,
// the checkpoint's signature, each entry body against its clip's fields, and
// each proof against the checkpoint. The clip bytes are then streamed once
// into the zip while they are hashed; if they are not the size and SHA-256
// the ledger recorded, Build fails. On any error what was written to w is
// incomplete and must be discarded.
func Build(ctx context.Context, w io.Writer, p Package) error {
	pp, err := prepare(p)
	if err != nil {
		return err
	}
	bw, err := bagit.NewWriter(w, pp.bag, pp.Bagged.UTC())
	if err != nil {
		return fmt.Errorf("exhibit: %w", err)
	}
	for _, c := range pp.clips {
		if err := addClip(ctx, bw, c); err != nil {
			return err
		}
	}
	for _, c := range pp.clips {
		proof, err := encodeProof(proofFile{
			Camera: c.Camera, Clip: c.Clip.Clip, File: c.dataPath(), Body: string(c.Body),
			LeafHash: hex.EncodeToString(ledger.LeafHash(c.Body)),
			Index:    c.Proof.Index, TreeSize: c.Proof.Size, Hashes: hexHashes(c.Proof.Hashes),
		})
		if err != nil {
			return fmt.Errorf("exhibit: clip %s: proof: %w", c.key(), err)
		}
		if err := bw.AddTag(c.proofPath(), proof); err != nil {
			return fmt.Errorf("exhibit: %w", err)
		}
		if err := bw.AddTag(c.contPath(), continuityText(pp, c)); err != nil {
			return fmt.Errorf("exhibit: %w", err)
		}
	}
	tags := []struct {
		path string
		data []byte
	}{
		{CheckpointFile, pp.Checkpoint},
		{KeyFile, []byte(pp.PublicKey + "\n")},
		{StatementFile, statementText(pp)},
		{ReadmeFile, readmeText(pp)},
	}
	for _, t := range tags {
		if err := bw.AddTag(t.path, t.data); err != nil {
			return fmt.Errorf("exhibit: %w", err)
		}
	}
	tm, err := bw.Finish(bagInfo(pp))
	if err != nil {
		return fmt.Errorf("exhibit: %w", err)
	}
	sum := sha256.Sum256(tm)
	sig, err := note.Sign(&note.Note{Text: signedText(pp.bag, hex.EncodeToString(sum[:]))}, pp.Signer)
	if err != nil {
		return fmt.Errorf("exhibit: sign tag manifest: %w", err)
	}
	// A signer whose name and key hash match PublicKey but whose key does
	// not would produce a package that can never verify; catch it here.
	if _, err := note.Open(sig, note.VerifierList(pp.verifier)); err != nil {
		return fmt.Errorf("exhibit: the signer's signature does not verify with PublicKey %s: %w", pp.PublicKey, err)
	}
	if err := bw.AddUnlisted(SignatureFile, sig); err != nil {
		return fmt.Errorf("exhibit: %w", err)
	}
	if err := bw.Close(); err != nil {
		return fmt.Errorf("exhibit: %w", err)
	}
	return nil
}

// addClip streams one clip into the bag and checks the bytes against the
// ledger entry.
func addClip(ctx context.Context, bw *bagit.Writer, c preparedClip) error {
	rc, err := c.Open(ctx)
	if err != nil {
		return fmt.Errorf("exhibit: clip %s: open: %w", c.key(), err)
	}
	sums, err := bw.AddPayload(ctx, c.key(), rc)
	cerr := rc.Close()
	if err != nil {
		return fmt.Errorf("exhibit: clip %s: %w", c.key(), err)
	}
	if cerr != nil {
		return fmt.Errorf("exhibit: clip %s: close: %w", c.key(), cerr)
	}
	if sums.Size != c.entry.Size || sums.SHA256 != c.entry.SHA256 {
		return fmt.Errorf("exhibit: clip %s: the bytes read are %d bytes with SHA-256 %s, but the ledger entry records %d bytes with SHA-256 %s: refusing to produce them as the original",
			c.key(), sums.Size, sums.SHA256, c.entry.Size, c.entry.SHA256)
	}
	return nil
}

// ErrInvalid is wrapped by Build's errors for a Package that fails a check
// before anything is written.
var ErrInvalid = errors.New("exhibit: invalid package")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
}

func prepare(p Package) (*prepared, error) {
	pp := &prepared{Package: p}
	required := []struct{ name, value string }{
		{"SourceOrganization", p.SourceOrganization},
		{"ExhibitRef", p.ExhibitRef},
		{"CrimeRef", p.CrimeRef},
		{"Officer", p.Officer},
		{"Force", p.Force},
		{"RequestID", p.RequestID},
		{"RequestedBy", p.RequestedBy},
		{"ApprovedBy", p.ApprovedBy},
	}
	for _, f := range required {
		if strings.TrimSpace(f.value) == "" {
			return nil, invalid("%s is empty", f.name)
		}
	}
	optional := []struct{ name, value string }{
		{"ContactName", p.ContactName}, {"ContactEmail", p.ContactEmail}, {"Incident", p.Incident},
	}
	for _, f := range append(required, optional...) {
		if err := checkLine(f.value); err != nil {
			return nil, invalid("%s %q: %v", f.name, f.value, err)
		}
	}
	if !ledger.ValidClipID(p.RequestID) {
		return nil, invalid("RequestID %q cannot name the bag directory: it must be 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit, without \"..\"", p.RequestID)
	}
	if strings.EqualFold(strings.TrimSpace(p.RequestedBy), strings.TrimSpace(p.ApprovedBy)) {
		return nil, invalid("the release was approved by the person who requested it (%q): approval needs a different person", p.ApprovedBy)
	}
	if p.Bagged.IsZero() {
		return nil, invalid("Bagged is not set")
	}
	if len(p.Clips) == 0 {
		return nil, invalid("no clips")
	}
	pp.bag = bagPrefix + p.RequestID

	if p.Signer == nil {
		return nil, invalid("no Signer")
	}
	v, err := note.NewVerifier(p.PublicKey)
	if err != nil {
		return nil, invalid("PublicKey %q is not a note verifier key: %v", p.PublicKey, err)
	}
	if p.Signer.Name() != v.Name() || p.Signer.KeyHash() != v.KeyHash() {
		return nil, invalid("Signer %s+%08x is not the key in PublicKey %s", p.Signer.Name(), p.Signer.KeyHash(), p.PublicKey)
	}
	pp.verifier = v
	cp, err := ledger.ParseCheckpoint(p.Checkpoint, v)
	if err != nil {
		return nil, invalid("the checkpoint does not verify with PublicKey: %v", err)
	}
	pp.cp = cp

	seen := map[string]string{}
	for i, c := range p.Clips {
		pc, err := prepareClip(pp, i, c)
		if err != nil {
			return nil, err
		}
		k := strings.ToLower(pc.key())
		if prev, dup := seen[k]; dup {
			return nil, invalid("clip %s is given twice (or differs only in letter case from %s, which would collide on Windows)", pc.key(), prev)
		}
		seen[k] = pc.key()
		pp.clips = append(pp.clips, pc)
	}
	return pp, nil
}

func prepareClip(pp *prepared, i int, c Clip) (preparedClip, error) {
	if !ledger.ValidCameraID(c.Camera) {
		return preparedClip{}, invalid("clip %d: camera %q is not a valid device id", i+1, c.Camera)
	}
	if !ledger.ValidClipID(c.Clip) {
		return preparedClip{}, invalid("clip %d: clip id %q is not valid (1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit, without \"..\"); ids are never altered", i+1, c.Clip)
	}
	pc := preparedClip{Clip: c}
	name := pc.key()
	if c.Open == nil {
		return pc, invalid("clip %s: Open is nil", name)
	}
	entry, prev, err := ledger.ParseBody(c.Body)
	if err != nil {
		return pc, invalid("clip %s: entry body: %v", name, err)
	}
	pc.entry, pc.prev = entry, prev
	diffs := []struct {
		field     string
		got, want string
	}{
		{"Camera", c.Camera, entry.Camera},
		{"Clip", c.Clip, entry.Clip},
		{"Wearer", c.Wearer, entry.Wearer},
		{"Site", c.Site, entry.Site},
		{"Start", fmtTime(c.Start), fmtTime(entry.Start)},
		{"End", fmtTime(c.End), fmtTime(entry.End)},
		{"Size", strconv.FormatInt(c.Size, 10), strconv.FormatInt(entry.Size, 10)},
		{"SHA256", c.SHA256, entry.SHA256},
	}
	for _, d := range diffs {
		if d.got != d.want {
			return pc, invalid("clip %s: %s is %q but the ledger entry body says %q", name, d.field, d.got, d.want)
		}
	}
	if err := ledger.VerifyInclusion(c.Body, c.Proof, pp.cp); err != nil {
		return pc, invalid("clip %s: proof does not lead to the checkpoint: %v", name, err)
	}
	var last time.Time
	for j, s := range c.Continuity {
		if s.At.IsZero() {
			return pc, invalid("clip %s: continuity step %d has no time", name, j+1)
		}
		if s.At.Before(last) {
			return pc, invalid("clip %s: continuity step %d (%s) is earlier than step %d: steps must be oldest first", name, j+1, fmtTime(s.At), j)
		}
		last = s.At
		if strings.TrimSpace(s.What) == "" {
			return pc, invalid("clip %s: continuity step %d: What is empty", name, j+1)
		}
		for _, f := range []struct{ n, v string }{{"What", s.What}, {"Who", s.Who}, {"Role", s.Role}, {"Why", s.Why}, {"Detail", s.Detail}} {
			if err := checkLine(f.v); err != nil {
				return pc, invalid("clip %s: continuity step %d: %s: %v", name, j+1, f.n, err)
			}
		}
	}
	if pp.Bagged.Before(last) {
		return pc, invalid("clip %s: continuity step at %s is after Bagged (%s)", name, fmtTime(last), fmtTime(pp.Bagged))
	}
	pc.steps = append(append([]Step(nil), c.Continuity...), Step{
		At:     pp.Bagged,
		What:   "exported",
		Who:    pp.ApprovedBy,
		Role:   "release approver",
		Why:    fmt.Sprintf("release request %s (crime reference %s), requested by %s", pp.RequestID, pp.CrimeRef, pp.RequestedBy),
		Detail: fmt.Sprintf("evidence package %s, exhibit %s, for %s (%s)", pp.bag, pp.ExhibitRef, pp.Officer, pp.Force),
	})
	return pc, nil
}

// checkLine refuses text that would break the one-line layout of the tag
// files (bag-info values, continuity fields): invalid UTF-8 and control
// characters, line breaks above all, which could forge further lines.
func checkLine(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("contains the control character %U (values must be one line)", r)
		}
	}
	return nil
}

func hexHashes(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}

// signedText is the text of the tag manifest's signed note.
func signedText(bag, tagManifestSHA256 string) string {
	return sigHeader + "\n" + "bag " + bag + "\n" + tagManifestSHA256 + "  " + bagit.TagManifestSHA256 + "\n"
}

// bagInfo is bag-info.txt, reserved RFC 8493 labels first.
func bagInfo(pp *prepared) []bagit.Field {
	cams := map[string]bool{}
	for _, c := range pp.clips {
		cams[c.Camera] = true
	}
	f := []bagit.Field{
		{Label: "Source-Organization", Value: pp.SourceOrganization},
	}
	if pp.ContactName != "" {
		f = append(f, bagit.Field{Label: "Contact-Name", Value: pp.ContactName})
	}
	if pp.ContactEmail != "" {
		f = append(f, bagit.Field{Label: "Contact-Email", Value: pp.ContactEmail})
	}
	f = append(f,
		bagit.Field{Label: "External-Description", Value: fmt.Sprintf("Body-worn camera footage: %d original clip(s) from %d camera(s), with ledger inclusion proofs, a signed checkpoint, continuity records and a draft section 9 statement. See README.txt.", len(pp.clips), len(cams))},
		bagit.Field{Label: "Bagging-Date", Value: pp.Bagged.UTC().Format("2006-01-02")},
		bagit.Field{Label: "External-Identifier", Value: pp.ExhibitRef},
		bagit.Field{Label: "Bag-Count", Value: "1 of 1"},
		bagit.Field{Label: "Internal-Sender-Identifier", Value: pp.RequestID},
		bagit.Field{Label: "Internal-Sender-Description", Value: "Vigil evidence release request"},
		bagit.Field{Label: "Crime-Reference", Value: pp.CrimeRef},
		bagit.Field{Label: "Requesting-Officer", Value: pp.Officer},
		bagit.Field{Label: "Force", Value: pp.Force},
	)
	if pp.Incident != "" {
		f = append(f, bagit.Field{Label: "Incident-Reference", Value: pp.Incident})
	}
	f = append(f,
		bagit.Field{Label: "Release-Requested-By", Value: pp.RequestedBy},
		bagit.Field{Label: "Release-Approved-By", Value: pp.ApprovedBy},
		bagit.Field{Label: "Bagging-Time", Value: fmtTime(pp.Bagged)},
	)
	return f
}
