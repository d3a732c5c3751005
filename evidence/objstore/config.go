package objstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Part sizes. S3 refuses parts under 5 MiB (except the last) and over 5 GiB,
// and an upload of more than 10,000 parts.
const (
	DefaultPartSize int64 = 16 << 20
	MinPartSize     int64 = 5 << 20
	MaxPartSize     int64 = 5 << 30
	maxParts              = 10000
)

// S3Config configures an S3 store. ParseS3URL fills the location fields from
// a URL; credentials come from CredentialsFromEnv, never from the URL.
type S3Config struct {
	Endpoint string // host[:port], no scheme
	Secure   bool   // https
	Bucket   string
	Prefix   string // key prefix inside the bucket, without leading or trailing '/'
	// Region to sign for; empty asks the server (one extra request per
	// client, cached).
	Region string

	AccessKey, SecretKey string
	// CAFile is a PEM file of extra CA certificates trusted for the
	// endpoint (a site's own MinIO), in addition to the system's.
	CAFile string

	// PartSize is the multipart part size: default 16 MiB, at least 5 MiB.
	// It bounds the size of one request, not memory: parts are streamed.
	PartSize int64
	// RateLimit caps upload bandwidth in bytes per second, shared by all
	// uploads through this store, so footage does not starve the alarm
	// path on a thin site uplink. 0 is unlimited.
	RateLimit int64

	// Timeout bounds connecting (dial and TLS handshake) and waiting for
	// a response once a request has been sent. 0 keeps minio-go's
	// defaults (30 s to dial, 1 min for the response).
	Timeout time.Duration
	// MaxRetries is how many attempts minio-go makes per request on a
	// transient failure before the operation fails with ErrUnavailable.
	// 0 keeps minio-go's default (10, backing off up to 1 s apart); 1
	// disables retries, leaving them to the caller's queue.
	MaxRetries int
}

// ParseS3URL reads an S3 location of the form
// http(s)://host[:port]/bucket[/prefix]. Credentials in the URL are refused:
// URLs end up in logs, process lists and config dumps.
func ParseS3URL(raw string) (S3Config, error) {
	var cfg S3Config
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the input, which could carry a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return cfg, fmt.Errorf("objstore: S3 URL: %w", err)
	}
	if u.User != nil {
		return cfg, errors.New("objstore: S3 URL: credentials in the URL are not accepted: " +
			"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use an AWS credentials file")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		// Not echoed: a query is where someone might try to pass a key.
		return cfg, errors.New("objstore: S3 URL: unexpected query or fragment: want http(s)://host[:port]/bucket[/prefix]")
	}
	switch u.Scheme {
	case "https":
		cfg.Secure = true
	case "http":
	default:
		return cfg, fmt.Errorf("objstore: S3 URL %q: scheme must be http or https", raw)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return cfg, fmt.Errorf("objstore: S3 URL %q: want http(s)://host[:port]/bucket[/prefix]", raw)
	}
	cfg.Endpoint = u.Host
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if bucket == "" {
		return cfg, fmt.Errorf("objstore: S3 URL %q: no bucket: want http(s)://host[:port]/bucket[/prefix]", raw)
	}
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return cfg, fmt.Errorf("objstore: S3 URL %q: bucket %q: %w", raw, bucket, err)
	}
	cfg.Bucket = bucket
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		if err := validKey(prefix); err != nil {
			return cfg, fmt.Errorf("objstore: S3 URL %q: prefix: %w", raw, err)
		}
	}
	cfg.Prefix = prefix
	return cfg, nil
}

// CredentialsFromEnv finds S3 credentials the way AWS tools do, without the
// URL: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY if set; else the
// [default] profile (or AWS_PROFILE's) of an AWS-style credentials file,
// which is credentialsFile if given, else AWS_SHARED_CREDENTIALS_FILE, else
// ~/.aws/credentials. Errors name files and variables, never values.
func CredentialsFromEnv(credentialsFile string) (access, secret string, err error) {
	id, key := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if id != "" || key != "" {
		if id == "" || key == "" {
			return "", "", errors.New("objstore: credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")
		}
		return id, key, nil
	}

	file := credentialsFile
	if file == "" {
		file = os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	}
	if file == "" {
		home, herr := os.UserHomeDir()
		if herr != nil {
			return "", "", errors.New("objstore: credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set and no home directory for ~/.aws/credentials")
		}
		file = filepath.Join(home, ".aws", "credentials")
	}
	profile := os.Getenv("AWS_PROFILE")
	if profile == "" {
		profile = "default"
	}
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", "", fmt.Errorf("objstore: credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set and %s does not exist", file)
		}
		return "", "", fmt.Errorf("objstore: credentials: %w", err)
	}
	access, secret, err = parseCredentials(data, profile)
	if err != nil {
		return "", "", fmt.Errorf("objstore: credentials file %s: %w", file, err)
	}
	return access, secret, nil
}

// parseCredentials reads an AWS shared credentials file (INI: [profile]
// sections of key = value lines, '#' and ';' comments) and returns the
// profile's access key id and secret.
func parseCredentials(data []byte, profile string) (access, secret string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	var section string
	found := false
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' || s[0] == ';' {
			continue
		}
		if s[0] == '[' {
			if !strings.HasSuffix(s, "]") {
				return "", "", fmt.Errorf("line %d: unterminated section header", line)
			}
			section = strings.TrimSpace(s[1 : len(s)-1])
			if section == profile {
				found = true
			}
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			// Do not echo the line: it may be a secret pasted without a key.
			return "", "", fmt.Errorf("line %d: want key = value", line)
		}
		if section != profile {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "aws_access_key_id":
			access = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", err
	}
	switch {
	case !found:
		return "", "", fmt.Errorf("no [%s] profile", profile)
	case access == "" || secret == "":
		return "", "", fmt.Errorf("profile [%s] needs both aws_access_key_id and aws_secret_access_key", profile)
	}
	return access, secret, nil
}
