package firmwaresim

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/devices"
)

// TusResumable is the version of the tus protocol the client speaks.
const TusResumable = "1.0.0"

// UploadPath is where Vigil's HTTP listener takes camera uploads
// (docs/evidence.md, "the camera contract").
const UploadPath = "/api/evidence/uploads/"

// Defaults applied to a zero TusConfig field.
const (
	DefaultChunkSize     = 8 << 20
	DefaultUploadRetries = 8
	DefaultMinBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff    = 10 * time.Second
)

// maxAnswer bounds how much of a response body the client keeps: enough for
// the gateway's explanation, not a whole error page.
const maxAnswer = 4096

// errCut is what the body of a deliberately cut PATCH returns, which makes
// the HTTP transport abandon the request and close its connection, as a
// camera walking out of coverage would.
var errCut = errors.New("firmwaresim: connection cut halfway (fault injection)")

// Outcome is how an upload ended.
type Outcome string

// Upload outcomes.
const (
	// OutcomeAccepted: the gateway answered the last PATCH with 204.
	OutcomeAccepted Outcome = "accepted"
	// OutcomeAlreadyReceived: the gateway answered the creation POST with
	// 409 Conflict, because it already holds this camera's clip.
	OutcomeAlreadyReceived Outcome = "already received"
	// OutcomeRejected: the gateway refused the finished upload with a 4xx on
	// the last PATCH, for instance because the digest did not match.
	OutcomeRejected Outcome = "rejected"
	// OutcomeUnconfirmed: the connection failed during the last PATCH and
	// the server's offset then showed every byte received, so the gateway's
	// verdict (accepted or rejected) was lost with the connection.
	OutcomeUnconfirmed Outcome = "complete but unconfirmed"
)

// StatusError is an answer the tus client did not expect, such as 401 for a
// wrong token or 400 for bad metadata. Upload returns it wrapped with the
// clip's id; errors.As finds it.
type StatusError struct {
	Op     string // "create", "patch", "head"
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("tus %s: %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// TusConfig configures a TusClient.
type TusConfig struct {
	// Endpoint is the creation URL. A URL without a path (a gateway's base
	// URL such as http://gw:8080) gets UploadPath appended.
	Endpoint string
	// Token is the camera's bearer token, sent with every request.
	Token string
	// HTTPClient sends the requests (a client with its own transport if nil).
	HTTPClient *http.Client
	// ChunkSize is the body of one PATCH (DefaultChunkSize if zero). Each
	// chunk is its own request, so a cut connection loses at most one.
	ChunkSize int64
	// MaxRetries is how many failed requests in a row the client tolerates
	// before it gives up (DefaultUploadRetries if zero; -1 for none).
	MaxRetries int
	// MinBackoff and MaxBackoff bound the wait between retries, which
	// doubles from the first to the second (defaults if zero).
	MinBackoff, MaxBackoff time.Duration
	// Logger receives retry diagnostics (discarded if nil). Tokens and
	// footage bytes are never logged.
	Logger *slog.Logger
}

// TusClient uploads files to a tus 1.0.0 server the way a Vigil camera
// does: one creation POST carrying the clip's metadata, then PATCH requests
// of a chunk each, resuming from the server's offset (HEAD) after a failure.
// It is safe for concurrent use.
type TusClient struct {
	endpoint *url.URL
	cfg      TusConfig
	log      *slog.Logger
}

// NewTusClient validates cfg and makes a client.
func NewTusClient(cfg TusConfig) (*TusClient, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("firmwaresim: gateway URL %q: %w", cfg.Endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("firmwaresim: gateway URL %q: want http://host:port or https://host:port", cfg.Endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = UploadPath
	}
	switch {
	case cfg.Token == "":
		return nil, errors.New("firmwaresim: gateway token is empty (use the token printed by vigil device add CAM --kind camera)")
	case strings.ContainsAny(cfg.Token, " \t\r\n"):
		return nil, errors.New("firmwaresim: gateway token contains white space")
	case cfg.ChunkSize < 0:
		return nil, fmt.Errorf("firmwaresim: chunk size %d is negative", cfg.ChunkSize)
	case cfg.MinBackoff < 0 || cfg.MaxBackoff < 0:
		return nil, errors.New("firmwaresim: backoff must not be negative")
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultUploadRetries
	}
	cfg.MaxRetries = max(cfg.MaxRetries, 0)
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = NewGatewayHTTPClient(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &TusClient{endpoint: u, cfg: cfg, log: cfg.Logger.With("component", "firmware-sim/tus")}, nil
}

// NewGatewayHTTPClient makes the HTTP client a camera uploads with: no
// overall timeout, since a multi-gigabyte upload takes as long as it takes,
// but a bound on the wait for each answer, so a gateway that stops
// responding turns into a retry instead of a hang. tlsConfig (nil for the
// system roots) verifies an https:// gateway.
func NewGatewayHTTPClient(tlsConfig *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 2 * time.Minute
	if tlsConfig != nil {
		tr.TLSClientConfig = tlsConfig
	}
	return &http.Client{Transport: tr}
}

// Endpoint is the creation URL uploads are POSTed to.
func (c *TusClient) Endpoint() string { return c.endpoint.String() }

// Upload is one file to upload and what to declare about it.
type Upload struct {
	// Path is the file. Its size is the Upload-Length and must equal
	// Clip.Size.
	Path string
	// Camera is the camera id declared in the metadata; the gateway checks
	// it against the token.
	Camera string
	// Clip is what the metadata declares: id, sha256, start and end.
	Clip devices.Clip
	// Filename and Type are the optional metadata keys; empty ones are left
	// out.
	Filename, Type string
	// CutHalfway abandons the PATCH that carries the middle byte of the
	// file once that byte is reached, closing the connection, and then
	// resumes from the offset the server reports.
	CutHalfway bool
}

// UploadResult says how an upload went.
type UploadResult struct {
	Outcome Outcome
	// Status is the HTTP status that decided the outcome.
	Status int
	// Body is the gateway's explanation for an already-received or
	// rejected clip (at most 4 KiB, trimmed).
	Body string
	// URL is the upload's URL on the server (the creation POST's Location).
	URL string
	// Sent counts the bytes handed to the connection in PATCH bodies,
	// including bytes sent again after a failure.
	Sent int64
	// Resumes counts the times the client asked the server's offset (HEAD)
	// after a failed or cut PATCH and continued from it.
	Resumes int
	// CutAt and ResumedFrom, with CutHalfway, are the file offset at which
	// the connection was cut and the server's offset the upload resumed
	// from (at most CutAt: bytes in flight when the connection closed are
	// lost).
	CutAt, ResumedFrom int64
	// Elapsed is the time from the creation POST to the final answer.
	Elapsed time.Duration
}

// Upload sends the file described by u and reports the gateway's verdict.
// Errors are reserved for failures: an already-received or rejected clip is
// a result, not an error. The file is read one chunk at a time, so its size
// does not matter.
func (c *TusClient) Upload(ctx context.Context, u Upload) (UploadResult, error) {
	began := time.Now()
	f, err := os.Open(u.Path)
	if err != nil {
		return UploadResult{}, fmt.Errorf("firmwaresim: upload %s: %w", u.Clip.ID, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return UploadResult{}, fmt.Errorf("firmwaresim: upload %s: %w", u.Clip.ID, err)
	}
	size := st.Size()
	if size != u.Clip.Size {
		return UploadResult{}, fmt.Errorf("firmwaresim: upload %s: file %s has %d bytes but the clip declares %d", u.Clip.ID, u.Path, size, u.Clip.Size)
	}
	if size == 0 {
		return UploadResult{}, fmt.Errorf("firmwaresim: upload %s: file %s is empty", u.Clip.ID, u.Path)
	}

	up := &upload{c: c, u: u, f: f, size: size}
	res, err := up.run(ctx)
	res.Elapsed = time.Since(began)
	if err != nil {
		return res, fmt.Errorf("firmwaresim: upload %s: %w", u.Clip.ID, err)
	}
	return res, nil
}

// upload is the state of one Upload call.
type upload struct {
	c    *TusClient
	u    Upload
	f    *os.File
	size int64
	res  UploadResult

	failures int    // failed requests in a row
	lastErr  string // the last failure logged, to log only changes
}

func (up *upload) run(ctx context.Context) (UploadResult, error) {
	loc, err := up.create(ctx)
	if err != nil || up.res.Outcome != "" {
		return up.res, err
	}
	up.res.URL = loc.String()

	cut := up.u.CutHalfway && up.size >= 2
	half := up.size / 2
	for offset := int64(0); ; {
		n := min(up.c.cfg.ChunkSize, up.size-offset)
		final := offset+n == up.size
		limit := int64(-1)
		if cut && offset <= half && half < offset+n {
			limit, cut = half-offset, false
		}
		next, status, body, wait, err := up.patch(ctx, loc, offset, n, limit)
		switch {
		case errors.Is(err, errCut):
			up.res.CutAt = offset + limit
			up.c.log.Info("connection cut halfway", "clip", up.u.Clip.ID, "offset", up.res.CutAt)
			// Back off as after any lost connection: the server may still be
			// handling the cut request, and resuming at once would race it.
			if err := up.failed(ctx, "patch", err, 0); err != nil {
				return up.res, err
			}
			off, err := up.resume(ctx, loc)
			if err != nil {
				return up.res, err
			}
			up.res.ResumedFrom = off
			offset = off
			continue
		case err == nil && status == http.StatusNoContent:
			up.failures = 0
			if next == up.size {
				up.res.Outcome, up.res.Status = OutcomeAccepted, status
				return up.res, nil
			}
			offset = next
			continue
		case err == nil && interrupted(status, body):
		case err == nil && final && verdictStatus(status):
			up.res.Outcome, up.res.Status, up.res.Body = OutcomeRejected, status, body
			return up.res, nil
		case err == nil && !retryableStatus(status):
			return up.res, &StatusError{Op: "patch", Status: status, Body: body}
		case err != nil && ctx.Err() != nil:
			return up.res, err
		}
		if err == nil {
			err = &StatusError{Op: "patch", Status: status, Body: body}
		}
		if err := up.failed(ctx, "patch", err, wait); err != nil {
			return up.res, err
		}
		off, err := up.resume(ctx, loc)
		if err != nil {
			return up.res, err
		}
		if off == up.size {
			// The server has every byte, so it ran its verdict, but the
			// answer was lost with the connection or was a server error
			// (kept in Status and Body).
			up.res.Outcome, up.res.Status, up.res.Body = OutcomeUnconfirmed, status, body
			return up.res, nil
		}
		offset = off
	}
}

// retryableStatus says whether an answer is worth a retry: server trouble,
// a lock held by the server's handling of a previous (cut) request, or an
// offset conflict, which a HEAD resolves.
func retryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusLocked, http.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

// interrupted reports whether a 400 is tusd telling the client that another
// request for the same upload took its lock (ERR_UPLOAD_INTERRUPTED): after
// a cut connection, the server may handle the stale request only once the
// client has resumed. That is no verdict on the clip, so it is retried.
func interrupted(status int, body string) bool {
	return status == http.StatusBadRequest && strings.HasPrefix(body, "ERR_UPLOAD_INTERRUPTED")
}

// verdictStatus says whether a 4xx answer to the last PATCH is the
// gateway's judgement of the finished clip (a digest mismatch: 460 or 422,
// with the problem in the body) rather than a protocol failure: a wrong
// token, an upload the server no longer has, a header it refuses.
func verdictStatus(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone,
		http.StatusPreconditionFailed, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return false
	}
	return status >= 400 && status < 500 && !retryableStatus(status)
}

// create POSTs the upload's metadata and returns its URL. A 409 sets the
// result's outcome to already-received instead.
func (up *upload) create(ctx context.Context) (*url.URL, error) {
	for {
		req, err := up.c.request(ctx, http.MethodPost, up.c.endpoint.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Upload-Length", strconv.FormatInt(up.size, 10))
		req.Header.Set("Upload-Metadata", up.metadata())
		status, body, resp, err := up.c.do(req)
		switch {
		case err == nil && status == http.StatusCreated:
			loc := resp.Header.Get("Location")
			if loc == "" {
				return nil, errors.New("tus create: 201 without a Location header")
			}
			u, err := req.URL.Parse(loc)
			if err != nil {
				return nil, fmt.Errorf("tus create: Location %q: %w", loc, err)
			}
			return u, nil
		case err == nil && status == http.StatusConflict:
			up.res.Outcome, up.res.Status, up.res.Body = OutcomeAlreadyReceived, status, body
			return nil, nil
		case err == nil && !retryableStatus(status):
			return nil, &StatusError{Op: "create", Status: status, Body: body}
		case err != nil && ctx.Err() != nil:
			return nil, err
		}
		if err == nil {
			err = &StatusError{Op: "create", Status: status, Body: body}
		}
		if err := up.failed(ctx, "create", err, retryAfter(resp)); err != nil {
			return nil, err
		}
	}
}

// metadata renders Upload-Metadata: comma-separated "key base64(value)"
// pairs, in a fixed order.
func (up *upload) metadata() string {
	cl := up.u.Clip
	pairs := [][2]string{
		{"camera", up.u.Camera},
		{"clip", cl.ID},
		{"sha256", cl.SHA256},
		{"start", cl.Start.UTC().Format(time.RFC3339)},
		{"end", cl.End.UTC().Format(time.RFC3339)},
		{"filename", up.u.Filename},
		{"type", up.u.Type},
	}
	var b strings.Builder
	for _, p := range pairs {
		if p[1] == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p[0] + " " + base64.StdEncoding.EncodeToString([]byte(p[1])))
	}
	return b.String()
}

// patch sends n bytes of the file from offset and returns the server's new
// offset, or its answer and any Retry-After wait. With limit ≥ 0 the body
// fails with errCut after limit bytes.
func (up *upload) patch(ctx context.Context, loc *url.URL, offset, n, limit int64) (next int64, status int, body string, wait time.Duration, err error) {
	var r io.Reader = io.NewSectionReader(up.f, offset, n)
	if limit >= 0 {
		r = io.MultiReader(io.LimitReader(r, limit), errReader{errCut})
	}
	counted := &countingReader{r: r}
	req, err := up.c.request(ctx, http.MethodPatch, loc.String(), io.NopCloser(counted))
	if err != nil {
		return 0, 0, "", 0, err
	}
	req.ContentLength = n
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	status, body, resp, err := up.c.do(req)
	up.res.Sent += counted.n
	if err != nil {
		if counted.err != nil {
			return 0, 0, "", 0, counted.err
		}
		return 0, 0, "", 0, err
	}
	if status != http.StatusNoContent {
		return 0, status, body, retryAfter(resp), nil
	}
	next, err = parseOffset(resp)
	if err != nil {
		return 0, 0, "", 0, fmt.Errorf("tus patch: %w", err)
	}
	if next <= offset || next > offset+n {
		return 0, 0, "", 0, fmt.Errorf("tus patch: server offset %d after sending %d bytes from %d", next, n, offset)
	}
	return next, status, "", 0, nil
}

// resume asks the server how much of the upload it holds (HEAD), retrying
// within the same budget of failures.
func (up *upload) resume(ctx context.Context, loc *url.URL) (int64, error) {
	for {
		req, err := up.c.request(ctx, http.MethodHead, loc.String(), nil)
		if err != nil {
			return 0, err
		}
		status, body, resp, err := up.c.do(req)
		if err == nil && status == http.StatusOK {
			off, err := parseOffset(resp)
			if err != nil {
				return 0, fmt.Errorf("tus head: %w", err)
			}
			if off > up.size {
				return 0, fmt.Errorf("tus head: server offset %d is past the file's %d bytes", off, up.size)
			}
			up.res.Resumes++
			up.c.log.Info("resuming upload", "clip", up.u.Clip.ID, "offset", off)
			return off, nil
		}
		if err == nil && !retryableStatus(status) {
			return 0, &StatusError{Op: "head", Status: status, Body: body}
		}
		if err != nil && ctx.Err() != nil {
			return 0, err
		}
		if err == nil {
			err = &StatusError{Op: "head", Status: status, Body: body}
		}
		if err := up.failed(ctx, "head", err, retryAfter(resp)); err != nil {
			return 0, err
		}
	}
}

// failed counts a failed request and waits before the next attempt, or
// gives up once MaxRetries failures in a row have been seen. The wait is the
// backoff, or the server's Retry-After (capped at MaxBackoff) when it gave
// one. A change of error is logged, not every repetition.
func (up *upload) failed(ctx context.Context, op string, err error, retryAfter time.Duration) error {
	up.failures++
	if up.failures > up.c.cfg.MaxRetries {
		return fmt.Errorf("tus %s: giving up after %d failed attempts: %w", op, up.failures, err)
	}
	if msg := err.Error(); msg != up.lastErr {
		up.lastErr = msg
		up.c.log.Warn("upload request failed; retrying", "clip", up.u.Clip.ID, "op", op, "attempt", up.failures, "err", err)
	}
	d := backoff(up.c.cfg.MinBackoff, up.c.cfg.MaxBackoff, up.failures)
	if retryAfter > 0 {
		d = min(retryAfter, up.c.cfg.MaxBackoff)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("tus %s: %w (after: %v)", op, ctx.Err(), err)
	case <-t.C:
		return nil
	}
}

// backoff is the wait before attempt n+1: lo doubled per failure, capped at
// hi, with jitter over its upper half so that many cameras cut by the same
// outage do not come back in step.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := hi
	if n < 32 {
		d = min(lo<<(n-1), hi)
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter reads a Retry-After header given in seconds.
func retryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// request builds a tus request with the protocol and authorization headers.
func (c *TusClient) request(ctx context.Context, method, target string, body io.ReadCloser) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("tus %s: %w", strings.ToLower(method), err)
	}
	req.Header.Set("Tus-Resumable", TusResumable)
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	return req, nil
}

// do sends req and returns the status and the start of the body, trimmed.
// The response is returned for its headers; its body is already closed.
func (c *TusClient) do(req *http.Request) (int, string, *http.Response, error) {
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, "", nil, fmt.Errorf("tus %s: read answer: %w", strings.ToLower(req.Method), err)
	}
	// Drain a little more so the connection can be reused; a larger body
	// is left and the connection closed.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	return resp.StatusCode, strings.TrimSpace(string(b)), resp, nil
}

// parseOffset reads the Upload-Offset header of a response.
func parseOffset(resp *http.Response) (int64, error) {
	v := resp.Header.Get("Upload-Offset")
	off, err := strconv.ParseInt(v, 10, 64)
	if err != nil || off < 0 {
		return 0, fmt.Errorf("Upload-Offset %q is not an offset", v)
	}
	return off, nil
}

// countingReader counts the bytes read through it and remembers its error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
