package bagit

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Limits on what Validate holds in memory. Manifests and bag-info.txt must
// be parsed whole; other tag files are kept (for Result.Tag) only when small.
const (
	maxParsed = 256 << 20
	maxKept   = 4 << 20
)

// Problem is one thing found wrong with a bag, worded for the person who
// has to decide whether to trust it.
type Problem struct {
	// Path is the file concerned, relative to the bag directory, or the raw
	// zip entry name for an entry outside it; "" for the bag as a whole.
	Path string
	// What names the check that failed and what was found.
	What string
}

// String renders the problem as "<path>: <what>", quoting a path that holds
// spaces or characters a terminal would interpret.
func (p Problem) String() string {
	if p.Path == "" {
		return p.What
	}
	return display(p.Path) + ": " + p.What
}

// InvalidError is Open's error for a zip that is not a bag it can read
// safely: not a zip, no bagit.txt, a wrong bagit.txt, or entries with unsafe
// names or types. It lists every such problem.
type InvalidError struct {
	Problems []Problem
}

// Error lists every problem on one line.
func (e *InvalidError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return "bagit: invalid bag: " + strings.Join(s, "; ")
}

// readerAt remembers the first error of the underlying reader, so that a
// failure to read the file (an I/O error for the caller) is told apart from
// a zip that is malformed (a problem with the bag).
type readerAt struct {
	r    io.ReaderAt
	mu   sync.Mutex
	fail error
}

func (a *readerAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := a.r.ReadAt(p, off)
	if err != nil && err != io.EOF {
		a.mu.Lock()
		if a.fail == nil {
			a.fail = err
		}
		a.mu.Unlock()
	}
	return n, err
}

func (a *readerAt) err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fail
}

// bagFile is one regular file of the bag.
type bagFile struct {
	path string // relative to the bag directory
	zf   *zip.File
}

// Bag is a bag in a zip whose structure Open has checked. Validate checks
// its content.
type Bag struct {
	name   string
	ra     *readerAt
	files  []bagFile
	byPath map[string]*zip.File
}

// Open reads the zip's directory from r (size bytes) and checks that it is
// one bag that can be read and extracted safely (see the package
// documentation). Problems with the archive are returned as an
// *InvalidError naming each entry; any other error is a failure to read r.
func Open(r io.ReaderAt, size int64) (*Bag, error) {
	ra := &readerAt{r: r}
	zr, err := zip.NewReader(ra, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		if ioErr := ra.err(); ioErr != nil {
			return nil, fmt.Errorf("bagit: read zip: %w", ioErr)
		}
		return nil, &InvalidError{Problems: []Problem{{What: "not a readable zip file: " + err.Error()}}}
	}

	// The bag directory is the top-level directory holding bagit.txt.
	var names []string
	for _, f := range zr.File {
		if dir, rest, ok := strings.Cut(f.Name, "/"); ok && rest == BagItFile {
			names = append(names, dir)
		}
	}
	switch {
	case len(names) == 0:
		return nil, &InvalidError{Problems: []Problem{{What: "no bagit.txt in a top-level directory of the zip: this is not a bag"}}}
	case len(names) > 1:
		q := make([]string, len(names))
		for i, n := range names {
			q[i] = display(n + "/" + BagItFile)
		}
		return nil, &InvalidError{Problems: []Problem{{What: "more than one bagit.txt (" + strings.Join(q, ", ") + "): a zip must hold exactly one bag"}}}
	}
	name := names[0]
	var probs []Problem
	if err := checkName(name); err != nil {
		probs = append(probs, Problem{Path: name + "/", What: "unsafe bag directory name: " + err.Error()})
	}

	b := &Bag{name: name, ra: ra, byPath: map[string]*zip.File{}}
	seen := map[string]string{} // lower-cased path → path
	dirs := map[string]bool{}   // lower-cased directories, explicit or implied
	for _, f := range zr.File {
		raw := f.Name
		if err := checkPath(strings.TrimSuffix(raw, "/")); err != nil && raw != name+"/" {
			probs = append(probs, Problem{Path: raw, What: "unsafe zip entry name: " + err.Error()})
			continue
		}
		p, ok := strings.CutPrefix(raw, name+"/")
		if !ok {
			probs = append(probs, Problem{Path: raw, What: "zip entry is outside the bag directory " + display(name+"/")})
			continue
		}
		if f.Flags&0x1 != 0 {
			probs = append(probs, Problem{Path: p, What: "zip entry is encrypted"})
			continue
		}
		mode := f.Mode()
		switch {
		case mode&fs.ModeSymlink != 0:
			probs = append(probs, Problem{Path: p, What: "zip entry is a symbolic link: a bag holds only regular files"})
			continue
		case mode.IsDir():
			if !strings.HasSuffix(raw, "/") {
				probs = append(probs, Problem{Path: p, What: "zip entry is marked as a directory but its name does not end in /"})
			} else if f.UncompressedSize64 != 0 || f.CompressedSize64 != 0 {
				probs = append(probs, Problem{Path: p, What: "zip directory entry has content"})
			} else if p != "" {
				d := strings.ToLower(strings.TrimSuffix(p, "/"))
				dirs[d] = true
			}
			continue
		case !mode.IsRegular():
			probs = append(probs, Problem{Path: p, What: fmt.Sprintf("zip entry is a special file (%s): a bag holds only regular files", mode.Type())})
			continue
		}
		key := strings.ToLower(p)
		if prev, dup := seen[key]; dup {
			if prev == p {
				probs = append(probs, Problem{Path: p, What: "zip holds two entries with this name: tools would disagree about which is the file"})
			} else {
				probs = append(probs, Problem{Path: p, What: "name differs only in letter case from " + display(prev) + ": the two collide when extracted on Windows or macOS"})
			}
			continue
		}
		seen[key] = p
		b.files = append(b.files, bagFile{path: p, zf: f})
		b.byPath[p] = f
	}
	// Every directory a file implies, so that a file cannot also be one.
	for key := range seen {
		for i := strings.LastIndexByte(key, '/'); i > 0; i = strings.LastIndexByte(key[:i], '/') {
			dirs[key[:i]] = true
		}
	}
	for _, f := range b.files {
		if dirs[strings.ToLower(f.path)] {
			probs = append(probs, Problem{Path: f.path, What: "name is both a file and a directory in the zip"})
		}
	}

	if f, ok := b.byPath[BagItFile]; ok {
		data, perr, err := b.readSmall(f, 1024)
		switch {
		case err != nil:
			return nil, err
		case perr != "":
			probs = append(probs, Problem{Path: BagItFile, What: perr})
		case string(data) != Declaration && string(data) != strings.ReplaceAll(Declaration, "\n", "\r\n"):
			probs = append(probs, Problem{Path: BagItFile, What: fmt.Sprintf("must be exactly %q, found %q", Declaration, truncate(data, 200))})
		}
	}
	if len(probs) > 0 {
		return nil, &InvalidError{Problems: probs}
	}
	return b, nil
}

// Name returns the bag's name, its directory in the zip.
func (b *Bag) Name() string { return b.name }

// Paths returns every regular file of the bag, relative to its directory, in
// zip order.
func (b *Bag) Paths() []string {
	out := make([]string, len(b.files))
	for i, f := range b.files {
		out[i] = f.path
	}
	return out
}

// readSmall reads a whole file of at most limit bytes. A problem with the
// entry is returned as a message; err is an I/O error.
func (b *Bag) readSmall(f *zip.File, limit int64) (data []byte, problem string, err error) {
	rc, err := f.Open()
	if err != nil {
		if ioErr := b.ra.err(); ioErr != nil {
			return nil, "", fmt.Errorf("bagit: read %s: %w", f.Name, ioErr)
		}
		return nil, "cannot read the zip entry: " + err.Error(), nil
	}
	defer rc.Close()
	data, err = io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		if ioErr := b.ra.err(); ioErr != nil {
			return nil, "", fmt.Errorf("bagit: read %s: %w", f.Name, ioErr)
		}
		return nil, entryProblem(err), nil
	}
	if int64(len(data)) > limit {
		return nil, fmt.Sprintf("larger than the %d bytes allowed for this file", limit), nil
	}
	return data, "", nil
}

func entryProblem(err error) string {
	if errors.Is(err, zip.ErrChecksum) {
		return "the zip entry's CRC-32 does not match its bytes: the file was changed inside the zip"
	}
	return "cannot read the zip entry: " + err.Error()
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// File is one regular file of a validated bag.
type File struct {
	// Path is relative to the bag directory, e.g. "data/cam-1/c0".
	Path string
	// Payload reports whether the file is under data/.
	Payload bool
	// Size is the number of bytes read.
	Size int64
	// Digests maps each algorithm the file was hashed with (always SHA256,
	// plus every algorithm of a manifest that covers files of its kind) to
	// the lowercase hex digest of the bytes read. It is nil when the file
	// could not be read, which is among the Problems.
	Digests map[string]string
}

// Result is the outcome of Validate.
type Result struct {
	// Bag is the bag's name.
	Bag string
	// Files lists every regular file in zip order.
	Files []File
	// Info is bag-info.txt, in file order (nil without one).
	Info []Field
	// Manifests and TagManifests name the manifest files found.
	Manifests, TagManifests []string
	// Unlisted names the tag files (neither payload nor tag manifests) that
	// no tag manifest lists. RFC 8493 allows them, but nothing protects
	// them: a caller that signs the tag manifest should treat them as
	// unsigned.
	Unlisted []string
	// PayloadOctets and PayloadFiles measure the payload actually read.
	PayloadOctets int64
	PayloadFiles  int
	// Problems is every check that failed. Empty means the bag is valid.
	Problems []Problem

	tags  map[string][]byte
	index map[string]int
}

// OK reports whether the bag is valid.
func (r Result) OK() bool { return len(r.Problems) == 0 }

// Tag returns the bytes of a tag file that were hashed, when it was small
// enough to keep (up to 4 MiB; manifests and bag-info.txt up to 256 MiB).
// Using these bytes rather than reading the file again means a caller acts
// on exactly what was checked.
func (r Result) Tag(path string) ([]byte, bool) {
	b, ok := r.tags[path]
	return b, ok
}

// File returns the result for one path.
func (r Result) File(path string) (File, bool) {
	i, ok := r.index[path]
	if !ok {
		return File{}, false
	}
	return r.Files[i], true
}

var oxumRE = regexp.MustCompile(`^([0-9]+)\.([0-9]+)$`)

// algName is how an algorithm is written in messages.
func algName(alg string) string {
	switch alg {
	case SHA256:
		return "SHA-256"
	case SHA512:
		return "SHA-512"
	}
	return alg
}

func newHash(alg string) hash.Hash {
	switch alg {
	case SHA256:
		return sha256.New()
	case SHA512:
		return sha512.New()
	}
	return nil
}

// manifest is one parsed manifest file.
type manifest struct {
	path, alg string
	entries   []ManifestEntry
}

// Validate reads every file of the bag once and checks it against the
// manifests, tag manifests and Payload-Oxum (see the package documentation).
// progress, when not nil, is called as bytes are read with the bytes done
// and the total (the sizes the zip declares), at most about once a MiB and
// once at the end. Every failed check is in Result.Problems; the error is
// only for failing to read the zip or ctx ending.
func (b *Bag) Validate(ctx context.Context, progress func(done, total int64)) (Result, error) {
	v := &validation{b: b, ctx: ctx, progress: progress}
	res := Result{Bag: b.name, tags: map[string][]byte{}, index: map[string]int{}}
	v.res = &res
	for _, f := range b.files {
		v.total += int64(f.zf.UncompressedSize64)
	}

	// Classify the files; parse manifests and bag-info.txt first, since they
	// decide which digests every other file needs.
	var payloadMs, tagMs []manifest
	parsed := map[string]bool{BagItFile: true}
	payloadAlgs := map[string]bool{SHA256: true}
	tagAlgs := map[string]bool{SHA256: true}
	for _, f := range b.files {
		switch {
		case f.path == FetchFile:
			res.Problems = append(res.Problems, Problem{Path: FetchFile, What: "the bag lists files to be fetched from elsewhere; an evidence bag must contain every file itself"})
		case f.path == InfoFile:
			parsed[f.path] = true
		default:
			if alg, ok := manifestAlg(f.path, manifestPrefix); ok {
				res.Manifests = append(res.Manifests, f.path)
				parsed[f.path] = true
				if hexLen[alg] == 0 {
					res.Problems = append(res.Problems, Problem{Path: f.path, What: fmt.Sprintf("algorithm %q is not supported (only sha256 and sha512): its digests were not checked", alg)})
					continue
				}
				payloadMs = append(payloadMs, manifest{path: f.path, alg: alg})
				payloadAlgs[alg] = true
			} else if alg, ok := manifestAlg(f.path, tagManifestPref); ok {
				res.TagManifests = append(res.TagManifests, f.path)
				parsed[f.path] = true
				if hexLen[alg] == 0 {
					res.Problems = append(res.Problems, Problem{Path: f.path, What: fmt.Sprintf("algorithm %q is not supported (only sha256 and sha512): its digests were not checked", alg)})
					continue
				}
				tagMs = append(tagMs, manifest{path: f.path, alg: alg})
				tagAlgs[alg] = true
			}
		}
	}
	if len(payloadMs) == 0 {
		res.Problems = append(res.Problems, Problem{What: "no manifest-sha256.txt or manifest-sha512.txt: the payload cannot be checked"})
	}

	// Read every file once: parsed files first, whole; then the rest,
	// streamed.
	order := make([]int, 0, len(b.files))
	for i, f := range b.files {
		if parsed[f.path] {
			order = append(order, i)
		}
	}
	for i, f := range b.files {
		if !parsed[f.path] {
			order = append(order, i)
		}
	}
	res.Files = make([]File, len(b.files))
	for _, i := range order {
		f := b.files[i]
		payload := strings.HasPrefix(f.path, payloadDir)
		algs := tagAlgs
		if payload {
			algs = payloadAlgs
		}
		keep := int64(maxKept)
		if parsed[f.path] {
			keep = maxParsed
		} else if payload {
			keep = 0
		}
		out, err := v.read(f, algs, keep)
		if err != nil {
			return res, err
		}
		out.Payload = payload
		res.Files[i] = out
		res.index[f.path] = i
		if payload {
			res.PayloadOctets += out.Size
			res.PayloadFiles++
		}
	}
	if progress != nil {
		progress(v.done, max(v.done, v.total))
	}

	for i := range payloadMs {
		m := &payloadMs[i]
		m.entries = v.parseManifest(m.path, m.alg)
		v.checkPayloadManifest(*m)
	}
	listedTag := map[string]bool{}
	for i := range tagMs {
		m := &tagMs[i]
		m.entries = v.parseManifest(m.path, m.alg)
		v.checkTagManifest(*m)
		for _, e := range m.entries {
			listedTag[e.Path] = true
		}
	}
	for _, f := range b.files {
		if strings.HasPrefix(f.path, payloadDir) || listedTag[f.path] {
			continue
		}
		if _, ok := manifestAlg(f.path, tagManifestPref); ok {
			continue
		}
		res.Unlisted = append(res.Unlisted, f.path)
	}
	v.checkInfo()
	return res, nil
}

// validation is the state of one Validate call.
type validation struct {
	b          *Bag
	ctx        context.Context
	res        *Result
	progress   func(done, total int64)
	done       int64
	total      int64
	lastReport int64
	buf        []byte
}

// read hashes one file with algs, keeping its bytes if it is at most keep
// bytes long.
func (v *validation) read(f bagFile, algs map[string]bool, keep int64) (File, error) {
	out := File{Path: f.path}
	hs := map[string]hash.Hash{}
	ws := make([]io.Writer, 0, len(algs))
	for alg := range algs {
		h := newHash(alg)
		hs[alg] = h
		ws = append(ws, h)
	}
	var kept *bytes.Buffer
	if keep > 0 {
		kept = &bytes.Buffer{}
	}
	dst := io.MultiWriter(ws...)
	rc, err := f.zf.Open()
	if err != nil {
		if ioErr := v.b.ra.err(); ioErr != nil {
			return out, fmt.Errorf("bagit: read %s: %w", f.path, ioErr)
		}
		v.problem(f.path, "cannot read the zip entry: "+err.Error())
		return out, nil
	}
	defer rc.Close()
	if v.buf == nil {
		// One buffer for the whole pass, no larger than the largest file
		// needs (declared sizes may lie; a smaller buffer only costs calls).
		n := int64(4096)
		for _, f := range v.b.files {
			n = max(n, min(int64(f.zf.UncompressedSize64), copyBuffer))
		}
		v.buf = make([]byte, n)
	}
	var readErr error
	for {
		if err := v.ctx.Err(); err != nil {
			return out, fmt.Errorf("bagit: validate: %w", err)
		}
		n, err := rc.Read(v.buf)
		if n > 0 {
			dst.Write(v.buf[:n]) // hash.Hash.Write never fails
			out.Size += int64(n)
			if kept != nil {
				if int64(kept.Len()+n) <= keep {
					kept.Write(v.buf[:n])
				} else {
					kept = nil
				}
			}
			v.done += int64(n)
			if v.progress != nil && v.done-v.lastReport >= copyBuffer {
				v.lastReport = v.done
				v.progress(v.done, max(v.done, v.total))
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	if readErr != nil {
		if ioErr := v.b.ra.err(); ioErr != nil {
			return out, fmt.Errorf("bagit: read %s: %w", f.path, ioErr)
		}
		v.problem(f.path, entryProblem(readErr))
		// A CRC failure is found at the end, after every byte was read and
		// hashed; the digests are still those of the bytes in the zip, and
		// the manifests say whether they are the bytes that were bagged.
		if !errors.Is(readErr, zip.ErrChecksum) {
			return out, nil
		}
	}
	out.Digests = map[string]string{}
	for alg, h := range hs {
		out.Digests[alg] = hex.EncodeToString(h.Sum(nil))
	}
	if kept != nil {
		v.res.tags[f.path] = kept.Bytes()
	} else if keep == maxParsed {
		v.problem(f.path, fmt.Sprintf("larger than %d MiB: too large to parse", maxParsed>>20))
	}
	return out, nil
}

func (v *validation) problem(path, what string) {
	v.res.Problems = append(v.res.Problems, Problem{Path: path, What: what})
}

// parseManifest parses a manifest that was read whole, reporting each bad
// line.
func (v *validation) parseManifest(path, alg string) []ManifestEntry {
	data, ok := v.res.tags[path]
	if !ok {
		return nil // unreadable: already a problem
	}
	entries, err := ParseManifest(data, alg)
	for _, e := range unjoin(err) {
		v.problem(path, e.Error())
	}
	return entries
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (v *validation) checkPayloadManifest(m manifest) {
	listed := map[string]bool{}
	for _, e := range m.entries {
		if !strings.HasPrefix(e.Path, payloadDir) {
			v.problem(m.path, fmt.Sprintf("line %d lists %s, which is not under data/: a payload manifest lists only payload files", e.Line, display(e.Path)))
			continue
		}
		listed[e.Path] = true
		v.checkDigest(m, e, "the payload file was removed")
	}
	for _, f := range v.b.files {
		if strings.HasPrefix(f.path, payloadDir) && !listed[f.path] {
			v.problem(f.path, "payload file not listed in "+m.path+": it was added after the bag was made")
		}
	}
}

func (v *validation) checkTagManifest(m manifest) {
	for _, e := range m.entries {
		if strings.HasPrefix(e.Path, payloadDir) {
			v.problem(m.path, fmt.Sprintf("line %d lists %s, a payload file: a tag manifest lists only tag files", e.Line, display(e.Path)))
			continue
		}
		if _, ok := manifestAlg(e.Path, tagManifestPref); ok {
			v.problem(m.path, fmt.Sprintf("line %d lists %s: a tag manifest must not list tag manifests", e.Line, display(e.Path)))
			continue
		}
		v.checkDigest(m, e, "the tag file was removed")
	}
}

// checkDigest compares one manifest line with the file it names.
func (v *validation) checkDigest(m manifest, e ManifestEntry, removed string) {
	f, ok := v.res.File(e.Path)
	if !ok {
		v.problem(e.Path, fmt.Sprintf("listed in %s (line %d) but not in the bag: %s", m.path, e.Line, removed))
		return
	}
	got, ok := f.Digests[m.alg]
	if !ok {
		return // unreadable: already a problem
	}
	if got != e.Digest {
		v.problem(e.Path, fmt.Sprintf("%s is %s but %s (line %d) says %s: the file is not the one that was bagged", algName(m.alg), got, m.path, e.Line, e.Digest))
	}
}

func (v *validation) checkInfo() {
	data, ok := v.res.tags[InfoFile]
	if !ok {
		return // absent (allowed) or unreadable (already a problem)
	}
	info, err := ParseInfo(data)
	for _, e := range unjoin(err) {
		v.problem(InfoFile, e.Error())
	}
	v.res.Info = info
	oxum := Lookup(info, "Payload-Oxum")
	switch {
	case len(oxum) > 1:
		v.problem(InfoFile, "Payload-Oxum is given more than once")
	case len(oxum) == 1:
		m := oxumRE.FindStringSubmatch(oxum[0])
		if m == nil {
			v.problem(InfoFile, fmt.Sprintf("Payload-Oxum %q is not <octets>.<file count>", oxum[0]))
			return
		}
		octets, err1 := strconv.ParseInt(m[1], 10, 64)
		count, err2 := strconv.Atoi(m[2])
		if err1 != nil || err2 != nil {
			v.problem(InfoFile, fmt.Sprintf("Payload-Oxum %q is out of range", oxum[0]))
			return
		}
		if octets != v.res.PayloadOctets || count != v.res.PayloadFiles {
			v.problem(InfoFile, fmt.Sprintf("Payload-Oxum says %d bytes in %d files but the payload is %d bytes in %d files", octets, count, v.res.PayloadOctets, v.res.PayloadFiles))
		}
	}
}
