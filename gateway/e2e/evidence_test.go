package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/vigil-gw/vigil/evidence/objstore/s3test"
	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

const bucket = "vigil-evidence"

// evidenceWorld is a gateway with footage going to a real MinIO.
type evidenceWorld struct {
	minio  *s3test.Server
	aws    *s3.Client
	state  string
	broker string
	s3URL  string
	vigil  *proc
	tokens map[string]string
}

// newEvidenceWorld starts MinIO, makes the locked bucket with the CLI,
// registers cameras (and buttons paired with them), and starts Vigil.
func newEvidenceWorld(t *testing.T, s3URL func(*s3test.Server) string, extra ...string) *evidenceWorld {
	t.Helper()
	w := &evidenceWorld{minio: s3test.Start(t), state: t.TempDir(), broker: testnet.ClosedAddr(t), tokens: map[string]string{}}
	w.aws = w.minio.AWSClient()
	w.s3URL = w.minio.URL(bucket)
	if s3URL != nil {
		w.s3URL = s3URL(w.minio)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", w.minio.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", w.minio.SecretKey)
	out, err := exec.Command(vigilBin, "evidence", "init-bucket", "--state", w.state, "--s3", w.minio.URL(bucket)).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for i, cam := range []string{"cam-1", "cam-2"} {
		tokFile := filepath.Join(t.TempDir(), "token")
		out, err := exec.Command(vigilBin, "device", "add", cam, "--kind", "camera", "--site", "leeds", "--wearer", fmt.Sprintf("Nurse %d", i+1),
			"--state", w.state, "--token-file", tokFile).CombinedOutput()
		require.NoError(t, err, "%s", out)
		b, err := os.ReadFile(tokFile)
		require.NoError(t, err)
		w.tokens[cam] = strings.TrimSpace(string(b))
		out, err = exec.Command(vigilBin, "device", "add", fmt.Sprintf("btn-%d", i+1), "--kind", "button", "--site", "leeds",
			"--wearer", fmt.Sprintf("Nurse %d", i+1), "--camera", cam, "--state", w.state).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	w.start(t, extra...)
	return w
}

func (w *evidenceWorld) start(t *testing.T, extra ...string) {
	t.Helper()
	w.vigil = startVigil(t, w.state, append([]string{"--broker-listen", w.broker, "--s3", w.s3URL}, extra...)...)
}

func (w *evidenceWorld) camera(t *testing.T, id string, mod func(*firmwaresim.CameraConfig)) *firmwaresim.Camera {
	t.Helper()
	cfg := firmwaresim.CameraConfig{Broker: "tcp://" + w.broker, Site: "leeds", Device: id, Gateway: "http://" + w.vigil.http,
		Token: w.tokens[id], Dir: t.TempDir(), ClipSize: 3 << 20, ClipLength: 50 * time.Millisecond, ChunkSize: 1 << 20,
		SeqFile: filepath.Join(t.TempDir(), "seq"), Format: firmwaresim.FormatRandom}
	if mod != nil {
		mod(&cfg)
	}
	c, err := firmwaresim.NewCamera(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	t.Cleanup(c.Close)
	return c
}

func (w *evidenceWorld) record(t *testing.T, c *firmwaresim.Camera) firmwaresim.ClipReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := c.Record(ctx)
	require.NoError(t, err)
	return r
}

type evidenceStatus struct {
	Clips, Backlog, Quarantined, Evidential int64
	LedgerSize, CheckpointSize              uint64
}

func (w *evidenceWorld) status(t *testing.T) evidenceStatus {
	t.Helper()
	code, body := w.vigil.api(t, http.MethodGet, "/api/evidence/status", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	var st evidenceStatus
	require.NoError(t, json.Unmarshal(body, &st))
	return st
}

// waitUploaded waits until n clips are in the store and none are queued.
func (w *evidenceWorld) waitUploaded(t *testing.T, n int64, within time.Duration) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("%d clips uploaded", n), func() bool {
		st := w.status(t)
		return st.Clips == n && st.Backlog == 0
	})
}

func (w *evidenceWorld) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(vigilBin, append(append([]string{"evidence"}, args...), "--state", w.state, "--s3", w.minio.URL(bucket))...).CombinedOutput()
	return string(out), err
}

// key finds a clip's object key in the store (there is one per clip).
func (w *evidenceWorld) key(t *testing.T, clip string) string {
	t.Helper()
	out, err := w.aws.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("clips/")})
	require.NoError(t, err)
	for _, o := range out.Contents {
		if strings.HasSuffix(*o.Key, "/"+clip) {
			return *o.Key
		}
	}
	t.Fatalf("no object for clip %s", clip)
	return ""
}

func TestEvidenceCameraToLockedBucket(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MinIO")
	}
	w := newEvidenceWorld(t, nil)
	ctx := context.Background()
	cam := w.camera(t, "cam-1", func(c *firmwaresim.CameraConfig) { c.CutHalfway = true; c.Twice = true })
	r1 := w.record(t, cam)
	assert.Equal(t, firmwaresim.OutcomeAccepted, r1.Upload.Outcome, "%+v", r1.Upload)
	assert.Positive(t, r1.Upload.Resumes, "the cut upload resumed")
	require.NotNil(t, r1.Again)
	assert.Equal(t, firmwaresim.OutcomeAlreadyReceived, r1.Again.Outcome, "the second upload of the same clip is refused as a duplicate")

	bad := w.camera(t, "cam-2", func(c *firmwaresim.CameraConfig) { c.WrongDigest = true })
	r2 := w.record(t, bad)
	assert.Equal(t, firmwaresim.OutcomeRejected, r2.Upload.Outcome)
	assert.Contains(t, r2.Upload.Body, "does not match")

	w.waitUploaded(t, 1, 60*time.Second)
	st := w.status(t)
	assert.Equal(t, int64(1), st.Quarantined)
	al := w.vigil.alerts(t)
	found := false
	for _, a := range al.Alerts {
		found = found || a.Event == "clip_digest_mismatch"
	}
	assert.True(t, found, "a digest mismatch raises an alert: %+v", al.Alerts)

	// Read back with the AWS SDK, a client independent of the one Vigil uses.
	key := w.key(t, r1.Clip.ID)
	assert.Equal(t, fmt.Sprintf("clips/leeds/cam-1/%s/%s", r1.Clip.Start.UTC().Format("2006/01/02"), r1.Clip.ID), key)
	head, err := w.aws.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	require.NoError(t, err)
	assert.Equal(t, r1.FileSHA256, head.Metadata["sha256"])
	assert.Equal(t, "0", head.Metadata["ledger-index"])
	assert.Equal(t, "cam-1", head.Metadata["camera"])
	assert.Equal(t, int64(3<<20), *head.ContentLength)
	ret, err := w.aws.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	require.NoError(t, err)
	assert.Equal(t, s3types.ObjectLockRetentionModeGovernance, ret.Retention.Mode)
	assert.WithinDuration(t, r1.Clip.Start.Add(31*24*time.Hour), *ret.Retention.RetainUntilDate, time.Second, "non-evidential: capture + 31 days")
	assert.False(t, w.legalHold(t, key))
	obj, err := w.aws.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.Copy(h, obj.Body)
	obj.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, r1.FileSHA256, hex.EncodeToString(h.Sum(nil)), "the stored bytes are the camera's")
	_, err = w.aws.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), VersionId: head.VersionId})
	require.Error(t, err, "a locked version cannot be deleted")

	// The gateway's local copy is gone once the stored one is verified.
	left, _ := filepath.Glob(filepath.Join(w.state, "evidence", "clips", "*"))
	assert.Empty(t, left)

	// A path trick in the upload metadata is refused before a byte is stored.
	req, _ := http.NewRequest(http.MethodPost, "http://"+w.vigil.http+"/api/evidence/uploads/", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+w.tokens["cam-1"])
	req.Header.Set("Upload-Length", "10")
	req.Header.Set("Upload-Metadata", "camera Y2FtLTE=,clip Li4vLi4vZXRjL3Bhc3N3ZA==,sha256 "+b64(strings.Repeat("a", 64))+",start "+b64("2026-11-21T10:00:00Z")+",end "+b64("2026-11-21T10:01:00Z"))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, string(body), "metadata clip")

	out, err := w.cli(t, "verify", "--deep")
	require.NoError(t, err, "%s", out)
	assert.Contains(t, out, "OK")
	out, err = w.cli(t, "ls", "--camera", "cam-1")
	require.NoError(t, err, "%s", out)
	assert.Contains(t, out, r1.Clip.ID)
	out, err = w.cli(t, "pubkey")
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `^vigil/[A-Za-z0-9_-]+/evidence\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+\n$`, out, "a note verifier key")
}

// legalHold reads an object's legal hold with the AWS SDK. MinIO answers
// NoSuchObjectLockConfiguration for an object that never had one: off.
func (w *evidenceWorld) legalHold(t *testing.T, key string) bool {
	t.Helper()
	h, err := w.aws.GetObjectLegalHold(context.Background(), &s3.GetObjectLegalHoldInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil && strings.Contains(err.Error(), "NoSuchObjectLockConfiguration") {
		return false
	}
	require.NoError(t, err)
	return h.LegalHold.Status == s3types.ObjectLockLegalHoldStatusOn
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestEvidenceDuressMakesFootageEvidentialRetroactively(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MinIO")
	}
	w := newEvidenceWorld(t, nil)
	ctx := context.Background()
	cam := w.camera(t, "cam-1", nil)
	before := w.record(t, cam)
	w.waitUploaded(t, 1, 60*time.Second)
	key := w.key(t, before.Clip.ID)
	require.False(t, w.legalHold(t, key))

	// Nurse 1 presses her duress button: her camera's footage from two
	// minutes before becomes evidential, the clip already stored included.
	pressDuress(t, "tcp://"+w.broker, "leeds", "btn-1")
	var incident string
	waitFor(t, 10*time.Second, "the duress alert", func() bool {
		for _, a := range w.vigil.alerts(t).Alerts {
			if a.Device == "btn-1" && a.Event == "duress" {
				incident = a.ID
			}
		}
		return incident != ""
	})
	waitFor(t, 30*time.Second, "the stored clip to get a legal hold", func() bool { return w.legalHold(t, key) })
	ret, err := w.aws.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	require.NoError(t, err)
	assert.Equal(t, s3types.ObjectLockRetentionModeGovernance, ret.Retention.Mode,
		"the legal hold keeps it while the incident is open; the evidential period starts when the incident is closed")

	// A clip recorded after the press (the camera was told to record) is
	// evidential from the start.
	after := w.record(t, cam)
	w.waitUploaded(t, 2, 60*time.Second)
	k2 := w.key(t, after.Clip.ID)
	assert.True(t, w.legalHold(t, k2))

	// Nurse 2's camera is untouched.
	other := w.camera(t, "cam-2", nil)
	o := w.record(t, other)
	w.waitUploaded(t, 3, 60*time.Second)
	assert.False(t, w.legalHold(t, w.key(t, o.Clip.ID)))

	out, err := w.cli(t, "ls", "--incident", incident)
	require.NoError(t, err, "%s", out)
	assert.Contains(t, out, before.Clip.ID)
	assert.Contains(t, out, after.Clip.ID)
	assert.NotContains(t, out, o.Clip.ID)
}

func TestEvidenceStoreOutageQueuesOnDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MinIO")
	}
	w := newEvidenceWorld(t, nil)
	cam := w.camera(t, "cam-1", func(c *firmwaresim.CameraConfig) { c.ClipSize = 512 << 10 })
	w.minio.Stop()
	var reports []firmwaresim.ClipReport
	for range 3 {
		reports = append(reports, w.record(t, cam))
	}
	for _, r := range reports {
		assert.Equal(t, firmwaresim.OutcomeAccepted, r.Upload.Outcome, "clips keep arriving while the store is down")
	}
	st := w.status(t)
	assert.Equal(t, int64(3), st.Backlog)
	// The alarm path is untouched by the outage.
	pressDuress(t, "tcp://"+w.broker, "leeds", "btn-2")
	w.minio.Restart()
	w.waitUploaded(t, 3, 90*time.Second)
	out, err := w.cli(t, "verify", "--deep")
	require.NoError(t, err, "%s", out)
}

func TestEvidenceKill9DuringMultipartResumesWithoutResending(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MinIO")
	}
	var proxy *s3test.CountingProxy
	w := newEvidenceWorld(t, func(m *s3test.Server) string {
		proxy = s3test.StartCountingProxy(t, m.Endpoint)
		return "http://" + proxy.Addr + "/" + bucket
	}, "--config", writeConfig(t, "evidence:\n  part_size_mib: 5\n  upload_rate_kbps: 4000\n"))
	const size = 24 << 20 // five parts of 5 MiB
	cam := w.camera(t, "cam-1", func(c *firmwaresim.CameraConfig) { c.ClipSize = size; c.ChunkSize = 8 << 20 })
	r := w.record(t, cam)
	require.Equal(t, firmwaresim.OutcomeAccepted, r.Upload.Outcome)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.state, "evidence.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	parts := func() int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM upload_parts`).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	waitFor(t, 60*time.Second, "two parts recorded", func() bool { return parts() >= 2 })
	w.vigil.kill9(t)
	done := parts()
	require.Less(t, done, 5, "killed mid-upload")
	before := proxy.Up()

	w.start(t) // no rate limit now; same store through the same proxy
	w.waitUploaded(t, 1, 90*time.Second)
	resent := proxy.Up() - before
	assert.Less(t, resent, int64(size-done*(5<<20))+(2<<20),
		"after the restart only the missing parts (and requests) went up: %d bytes for %d of 5 parts remaining", resent, 5-done)

	obj, err := w.aws.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(w.key(t, r.Clip.ID))})
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.Copy(h, obj.Body)
	obj.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, r.FileSHA256, hex.EncodeToString(h.Sum(nil)))
}

func TestEvidenceVerifyDeepNamesTampering(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MinIO")
	}
	w := newEvidenceWorld(t, nil)
	ctx := context.Background()
	cam := w.camera(t, "cam-1", func(c *firmwaresim.CameraConfig) { c.ClipSize = 256 << 10 })
	var clips []firmwaresim.ClipReport
	for range 3 {
		clips = append(clips, w.record(t, cam))
		time.Sleep(time.Second) // clip ids carry the second they start
	}
	w.waitUploaded(t, 3, 60*time.Second)
	out, err := w.cli(t, "verify", "--deep")
	require.NoError(t, err, "%s", out)

	// 1. Someone with store credentials writes other bytes over clip 0 (a new version).
	k0 := w.key(t, clips[0].Clip.ID)
	_, err = w.aws.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k0), Body: strings.NewReader("not the footage"),
		Metadata: map[string]string{"sha256": clips[0].FileSHA256}})
	require.NoError(t, err)
	// 2. Clip 1 is "deleted" (a delete marker hides it).
	k1 := w.key(t, clips[1].Clip.ID)
	_, err = w.aws.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(k1)})
	require.NoError(t, err)
	// 3. An object the ledger never saw appears.
	_, err = w.aws.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("clips/leeds/cam-1/2026/01/01/planted"), Body: strings.NewReader("x")})
	require.NoError(t, err)
	// 4. A ledger row is changed in the gateway's database.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.state, "evidence.db")+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	_, err = db.Exec(`UPDATE ledger_entries SET body=replace(body, '"size":262144', '"size":262145') WHERE idx=2`)
	require.NoError(t, err)
	db.Close()

	out, err = w.cli(t, "verify", "--deep")
	require.Error(t, err, "verify exits non-zero when it finds problems")
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee))
	assert.Contains(t, out, "PROBLEM: clip cam-1/"+clips[0].Clip.ID+": object "+k0+" altered")
	assert.Contains(t, out, "PROBLEM: clip cam-1/"+clips[1].Clip.ID+": object "+k1+" missing")
	assert.Contains(t, out, "object clips/leeds/cam-1/2026/01/01/planted: stored but not in the ledger")
	assert.Contains(t, out, "entry 2 (cam-1/"+clips[2].Clip.ID+")")
	t.Logf("verify --deep:\n%s", out)
}

// pressDuress presses a simulated button once and returns after the broker has it.
func pressDuress(t *testing.T, broker, site, device string) *firmwaresim.Button {
	t.Helper()
	b, err := firmwaresim.NewButton(firmwaresim.ButtonConfig{Broker: broker, Site: site, Device: device, SeqFile: filepath.Join(t.TempDir(), "seq")})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, b.Connect(ctx))
	t.Cleanup(b.Close)
	_, err = b.Duress(ctx)
	require.NoError(t, err)
	require.NoError(t, b.Flush(ctx))
	return b
}

// writeConfig writes a YAML config file for vigil run.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vigil.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
	return p
}

// TestEvidenceUploadOverHTTPS: with a certificate the API and the upload
// endpoint are HTTPS only; a camera that trusts the site CA uploads, and a
// plain-HTTP request gets nothing.
func TestEvidenceUploadOverHTTPS(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	w := &evidenceWorld{state: t.TempDir(), broker: testnet.ClosedAddr(t), tokens: map[string]string{}}
	dir := t.TempDir()
	_, certFile, keyFile, pool := testPKI(t, dir)
	tokFile := filepath.Join(dir, "token")
	out, err := exec.Command(vigilBin, "device", "add", "cam-1", "--kind", "camera", "--site", "leeds", "--wearer", "Nurse 1", "--state", w.state, "--token-file", tokFile).CombinedOutput()
	require.NoError(t, err, "%s", out)
	b, err := os.ReadFile(tokFile)
	require.NoError(t, err)
	w.tokens["cam-1"] = strings.TrimSpace(string(b))
	cfg := writeConfig(t, fmt.Sprintf("http_cert_file: %s\nhttp_key_file: %s\n", certFile, keyFile))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	w.vigil = launchVigil(t, vigilBin, w.state, "https", client, "--config", cfg, "--broker-listen", w.broker)

	cam := w.camera(t, "cam-1", func(c *firmwaresim.CameraConfig) {
		c.Gateway = "https://" + w.vigil.http
		c.GatewayTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		c.ClipSize = 256 << 10
	})
	r := w.record(t, cam)
	assert.Equal(t, firmwaresim.OutcomeAccepted, r.Upload.Outcome, "%+v", r.Upload)
	w.waitUploaded(t, 1, 30*time.Second)

	resp, err := http.Get("http://" + w.vigil.http + "/healthz")
	if err == nil {
		resp.Body.Close()
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, "no plain HTTP beside HTTPS")
	}
}
