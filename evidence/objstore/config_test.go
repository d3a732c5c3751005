package objstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var s3URLCases = []struct {
	raw     string
	want    S3Config
	wantErr string
}{
	{raw: "http://127.0.0.1:9000/evidence", want: S3Config{Endpoint: "127.0.0.1:9000", Bucket: "evidence"}},
	{raw: "https://s3.eu-west-2.amazonaws.com/trust-bwc/site-1/", want: S3Config{Endpoint: "s3.eu-west-2.amazonaws.com", Secure: true, Bucket: "trust-bwc", Prefix: "site-1"}},
	{raw: "https://minio.local/evidence/a/b", want: S3Config{Endpoint: "minio.local", Secure: true, Bucket: "evidence", Prefix: "a/b"}},
	{raw: "http://[::1]:9000/evidence/", want: S3Config{Endpoint: "[::1]:9000", Bucket: "evidence"}},
	{raw: "http://user:secretpw@127.0.0.1:9000/evidence", wantErr: "AWS_ACCESS_KEY_ID"},
	{raw: "http://user@127.0.0.1:9000/evidence", wantErr: "AWS_SECRET_ACCESS_KEY"},
	{raw: "ftp://host/evidence", wantErr: "scheme"},
	{raw: "127.0.0.1:9000/evidence", wantErr: ""},
	{raw: "http:///evidence", wantErr: "want http(s)"},
	{raw: "http://host", wantErr: "no bucket"},
	{raw: "http://host/", wantErr: "no bucket"},
	{raw: "http://host/Bad_Bucket", wantErr: "bucket"},
	{raw: "http://host/evidence?region=x", wantErr: "query"},
	{raw: "http://host/evidence#frag", wantErr: "query or fragment"},
	{raw: "http://host/evidence/a//b", wantErr: "prefix"},
	{raw: "http://host/evidence/../other", wantErr: "prefix"},
	{raw: "http://host/evidence/%2e%2e/x", wantErr: "prefix"},
	{raw: "http://ho st/evidence", wantErr: ""},
}

func TestParseS3URL(t *testing.T) {
	for _, tc := range s3URLCases {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := ParseS3URL(tc.raw)
			if tc.want == (S3Config{}) {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.NotContains(t, err.Error(), "secretpw", "the error must not repeat a password")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func FuzzParseS3URL(f *testing.F) {
	for _, tc := range s3URLCases {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		cfg, err := ParseS3URL(raw)
		if err != nil {
			return
		}
		if cfg.Endpoint == "" || cfg.Bucket == "" || strings.Contains(cfg.Endpoint, "@") {
			t.Fatalf("ParseS3URL(%q) = %+v", raw, cfg)
		}
		if cfg.Prefix != "" && validKey(cfg.Prefix) != nil {
			t.Fatalf("ParseS3URL(%q) accepted prefix %q", raw, cfg.Prefix)
		}
	})
}

func TestCredentialsFromEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "credentials")
	require.NoError(t, os.WriteFile(file, []byte(`# comment
[other]
aws_access_key_id = OTHERID
aws_secret_access_key = othersecret

[default]
aws_access_key_id=DEFAULTID
; comment
aws_secret_access_key = default/secret+key
`), 0o600))
	envFile := filepath.Join(dir, "env-credentials")
	require.NoError(t, os.WriteFile(envFile, []byte("[default]\naws_access_key_id = ENVFILEID\naws_secret_access_key = envfilesecret\n"), 0o600))
	badFile := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(badFile, []byte("[default]\naws_access_key_id = ID\nnot-a-pair-but-a-leaked-secret\n"), 0o600))
	noSecret := filepath.Join(dir, "nosecret")
	require.NoError(t, os.WriteFile(noSecret, []byte("[default]\naws_access_key_id = ID\n"), 0o600))

	cases := []struct {
		name                 string
		env                  map[string]string
		file                 string
		access, secret, errs string
	}{
		{name: "env", env: map[string]string{"AWS_ACCESS_KEY_ID": "ENVID", "AWS_SECRET_ACCESS_KEY": "envsecret"}, file: file, access: "ENVID", secret: "envsecret"},
		{name: "env half set", env: map[string]string{"AWS_ACCESS_KEY_ID": "ENVID"}, file: file, errs: "together"},
		{name: "file default profile", file: file, access: "DEFAULTID", secret: "default/secret+key"},
		{name: "AWS_PROFILE", env: map[string]string{"AWS_PROFILE": "other"}, file: file, access: "OTHERID", secret: "othersecret"},
		{name: "missing profile", env: map[string]string{"AWS_PROFILE": "nope"}, file: file, errs: "no [nope] profile"},
		{name: "AWS_SHARED_CREDENTIALS_FILE", env: map[string]string{"AWS_SHARED_CREDENTIALS_FILE": envFile}, access: "ENVFILEID", secret: "envfilesecret"},
		{name: "explicit file wins over AWS_SHARED_CREDENTIALS_FILE", env: map[string]string{"AWS_SHARED_CREDENTIALS_FILE": envFile}, file: file, access: "DEFAULTID", secret: "default/secret+key"},
		{name: "missing file", file: filepath.Join(dir, "absent"), errs: "does not exist"},
		{name: "home fallback", env: map[string]string{"HOME": dir}, errs: filepath.Join(dir, ".aws", "credentials")},
		{name: "malformed line", file: badFile, errs: "line 3"},
		{name: "secret missing", file: noSecret, errs: "needs both"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"} {
				t.Setenv(k, "")
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			access, secret, err := CredentialsFromEnv(tc.file)
			if tc.errs != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.errs)
				for _, s := range []string{"envsecret", "othersecret", "default/secret+key", "leaked-secret", "envfilesecret"} {
					assert.NotContains(t, err.Error(), s, "errors must not carry credentials")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.access, access)
			assert.Equal(t, tc.secret, secret)
		})
	}
}

func TestNewS3Validation(t *testing.T) {
	good := S3Config{Endpoint: "127.0.0.1:9000", Bucket: "evidence", AccessKey: "a", SecretKey: "supersecretvalue"}
	_, err := NewS3(good)
	require.NoError(t, err)
	cases := []struct {
		name string
		mut  func(*S3Config)
		want string
	}{
		{"no endpoint", func(c *S3Config) { c.Endpoint = "" }, "endpoint"},
		{"url endpoint", func(c *S3Config) { c.Endpoint = "http://x/y" }, "host[:port]"},
		{"no credentials", func(c *S3Config) { c.SecretKey = "" }, "AWS_ACCESS_KEY_ID"},
		{"small parts", func(c *S3Config) { c.PartSize = 1 << 20 }, "part size"},
		{"bad bucket", func(c *S3Config) { c.Bucket = "a" }, "bucket"},
		{"bad prefix", func(c *S3Config) { c.Prefix = "a/../b" }, "prefix"},
		{"negative rate", func(c *S3Config) { c.RateLimit = -1 }, "rate"},
		{"CA on http", func(c *S3Config) { c.CAFile = "/etc/ssl/x.pem" }, "plain http"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mut(&cfg)
			_, err := NewS3(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "supersecretvalue")
		})
	}
}
