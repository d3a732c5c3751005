// Package s3test runs a real MinIO server for tests, so that the object store
// is exercised against the S3 implementation Vigil's users deploy rather than a
// fake that agrees with our own reading of the protocol.
//
// Each Server is a separate MinIO process on a free loopback port with its own
// temporary data directory and random root credentials. The binary is the one
// deploy/testenv/install.sh builds (it prints VIGIL_MINIO=...): the environment
// variable VIGIL_MINIO, else $(go env GOPATH)/bin/minio, else minio on PATH.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Region is the region MinIO reports and the one clients should sign for.
const Region = "us-east-1"

// readyTimeout bounds how long a start may take. MinIO is ready in about half
// a second on an idle machine; the margin is for a loaded CI runner with the
// race detector slowing everything else down.
const readyTimeout = 30 * time.Second

// Server is a running (or stopped, between Stop and Restart) MinIO process.
// Its methods must be called from the test's goroutines, not concurrently with
// each other.
type Server struct {
	// Endpoint is host:port of the S3 API, e.g. "127.0.0.1:40123".
	Endpoint string
	// AccessKey and SecretKey are the root credentials, random per server.
	AccessKey, SecretKey string

	t       testing.TB
	bin     string
	dataDir string
	home    string
	logPath string

	mu   sync.Mutex
	proc *process // nil while stopped
}

// process is one run of the MinIO binary; done is closed when it has exited.
type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // exit status, valid after done is closed
}

// Start starts MinIO and registers its shutdown with t.Cleanup. When the
// binary cannot be found the test is skipped under -short and fails
// otherwise, because the full suite is meant to run against the real server.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if testing.Short() {
			t.Skipf("s3test: %v (skipped in -short mode)", err)
		}
		t.Fatalf("s3test: %v: run deploy/testenv/install.sh (make test does)", err)
	}
	dir := t.TempDir()
	s := &Server{
		AccessKey: "vigil-" + randomHex(t, 6),
		SecretKey: randomHex(t, 20),
		t:         t,
		bin:       bin,
		dataDir:   filepath.Join(dir, "data"),
		home:      filepath.Join(dir, "home"),
		logPath:   filepath.Join(dir, "minio.log"),
	}
	for _, d := range []string{s.dataDir, s.home} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("s3test: %v", err)
		}
	}
	// Registered after t.TempDir, so it runs before the directory is
	// removed (cleanups run last-in first-out).
	t.Cleanup(func() {
		if t.Failed() {
			s.logTail()
		}
		s.Stop()
	})

	// The free port is found by binding and releasing it, so another process
	// can take it before MinIO binds: try a few ports before giving up.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("s3test: %v", err)
		}
		s.Endpoint = port
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	s.logTail()
	t.Fatalf("s3test: starting minio: %v", lastErr)
	return nil
}

// Binary returns the MinIO server binary tests should run.
func Binary() (string, error) {
	if p := os.Getenv("VIGIL_MINIO"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("VIGIL_MINIO=%s is not an executable file", p)
	}
	if gopath := goPath(); gopath != "" {
		// GOPATH may be a list; go install writes to the first entry.
		first := filepath.SplitList(gopath)[0]
		if p := filepath.Join(first, "bin", "minio"); isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", errors.New("minio server binary not found (VIGIL_MINIO, $(go env GOPATH)/bin/minio, PATH)")
}

// URL is the server's S3 URL for bucket, in the form objstore.ParseS3URL
// reads.
func (s *Server) URL(bucket string) string {
	return "http://" + s.Endpoint + "/" + bucket
}

// Stop stops MinIO (SIGTERM, then SIGKILL if it has not exited within ten
// seconds). The data directory is kept for Restart. Stopping a stopped server
// does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_ = p.log.Close()
}

// Restart stops MinIO if it is running and starts it again on the same port
// with the same data directory and credentials, as after an outage.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	// The port was ours a moment ago; a retry covers the short window in
	// which the old socket may still be closing.
	var err error
	for range 3 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.logTail()
	s.t.Fatalf("s3test: restarting minio: %v", err)
}

// AWSClient returns an aws-sdk-go-v2 S3 client for this server (path-style
// addressing, region us-east-1, the root credentials). Tests use it to read
// back what minio-go wrote through an implementation that shares no code with
// it.
func (s *Server) AWSClient() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String("http://" + s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		// Checksums only where the API requires them: the SDK's default
		// CRC trailers and response validation add nothing to these
		// checks (the tests hash what they read) and would log a warning
		// for every composite multipart checksum it cannot validate.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// start runs the binary and waits until MinIO reports ready.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "server",
		"--address", s.Endpoint,
		"--certs-dir", filepath.Join(s.home, "certs"),
		"--quiet",
		s.dataDir)
	// A minimal environment: MINIO_* variables from the developer's shell
	// must not change the server under test, and HOME points into the
	// temporary directory so MinIO writes nothing into the real one.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + s.home,
		"MINIO_ROOT_USER=" + s.AccessKey,
		"MINIO_ROOT_PASSWORD=" + s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	p := &process{cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := s.waitReady(p); err != nil {
		s.Stop()
		return err
	}
	return nil
}

// waitReady polls MinIO until it serves S3 requests, the process exits, or
// readyTimeout passes. The readiness probe alone is not enough: it can
// answer 200 while S3 calls still fail with XMinioServerNotInitialized, so
// a signed ListBuckets must succeed too.
func (s *Server) waitReady(p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	url := "http://" + s.Endpoint + "/minio/health/ready"
	s3c := s.AWSClient()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if probe(ctx, client, url) {
			lctx, lcancel := context.WithTimeout(ctx, time.Second)
			_, err := s3c.ListBuckets(lctx, &s3.ListBucketsInput{}, func(o *s3.Options) {
				o.RetryMaxAttempts = 1
			})
			lcancel()
			if err == nil {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("minio exited before it was ready: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("minio not ready at %s after %s", s.Endpoint, readyTimeout)
		case <-tick.C:
		}
	}
}

// probe reports whether url answers 200.
func probe(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// logTail copies the end of MinIO's log into the test log, for diagnosing a
// failure.
func (s *Server) logTail() {
	b, err := os.ReadFile(s.logPath)
	if err != nil || len(b) == 0 {
		return
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	s.t.Logf("s3test: minio log (tail):\n%s", bytes.TrimSpace(b))
}

// goPath is `go env GOPATH`, falling back to go/build's default when the go
// command is not available (tests can run from a compiled test binary).
func goPath() string {
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		if p := strings.TrimSpace(string(out)); p != "" {
			return p
		}
	}
	return build.Default.GOPATH
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("s3test: %v", err)
	}
	return hex.EncodeToString(b)
}
