package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// person makes a user with the CLI and returns their API token.
func (w *evidenceWorld) person(t *testing.T, name, role string, extra ...string) string {
	t.Helper()
	out, err := exec.Command(vigilBin, append([]string{"user", "add", name, "--role", role, "--token", "--state", w.state}, extra...)...).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// as runs a vigil command as the holder of token.
func (w *evidenceWorld) as(t *testing.T, token string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(vigilBin, append(args, "--state", w.state, "--s3", w.minio.URL(bucket))...)
	cmd.Env = append(os.Environ(), "VIGIL_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// call calls the API with a person's token.
func (w *evidenceWorld) call(t *testing.T, token, method, path, body string) (int, []byte) {
	t.Helper()
	return callURL(t, w.vigil.client, w.vigil.scheme+"://"+w.vigil.http, token, method, path, body)
}

// buildVerify builds the standalone verifier the police use.
func buildVerify(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vigil-verify")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/vigil-gw/vigil/cmd/vigil-verify").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// TestGovernanceDuressToVerifiedPolicePackage is the README tour: a duress
// with footage, an investigator who may see it only once assigned and only
// with a reason, a release approved by a different IG officer, a package
// that vigil-verify passes (and fails when tampered with), and the IG
// report of who saw the footage and why.
func TestGovernanceDuressToVerifiedPolicePackage(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MinIO")
	}
	// Seal the audit trail every 5 records so seals reach the bucket here.
	cfg := writeConfig(t, "governance:\n  audit_seal_every: 5\n  audit_seal_interval: 1s\n")
	w := newEvidenceWorld(t, nil, "--config", cfg)
	ctx := context.Background()
	cam := w.camera(t, "cam-1", nil)
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
	rec := w.record(t, cam)
	other := w.record(t, w.camera(t, "cam-2", nil)) // Nurse 2's footage: never released
	w.waitUploaded(t, 2, 60*time.Second)
	clipID := "cam-1:" + rec.Clip.ID

	sup := w.person(t, "sam", "supervisor")
	ian := w.person(t, "ian", "investigator")
	op := w.person(t, "olive", "operator")
	iggy := w.person(t, "iggy", "ig_officer")
	ingrid := w.person(t, "ingrid", "ig_officer")
	why := `{"why":"reviewing the assault on Nurse 1","incident":"` + incident + `"}`

	// Not yet assigned: the investigator sees nothing and is refused.
	code, body := w.call(t, ian, "GET", "/api/clips", "")
	require.Equal(t, 200, code, "%s", body)
	assert.JSONEq(t, `{"clips":[]}`, string(body))
	code, body = w.call(t, ian, "POST", "/api/clips/"+clipID+"/access", why)
	assert.Equal(t, http.StatusForbidden, code, "%s", body)
	code, body = w.call(t, op, "POST", "/api/clips/"+clipID+"/access", why)
	assert.Equal(t, http.StatusForbidden, code, "%s", body)
	assert.Contains(t, string(body), "role operator may not view footage")

	code, body = w.call(t, sup, "POST", "/api/incidents/"+incident+"/assign", `{"user":"ian","why":"investigation of the assault"}`)
	require.Equal(t, 200, code, "%s", body)
	code, body = w.call(t, ian, "POST", "/api/clips/"+clipID+"/access", `{"incident":"`+incident+`"}`)
	assert.Equal(t, http.StatusBadRequest, code, "%s", body)
	assert.Contains(t, string(body), "justification")
	code, body = w.call(t, ian, "POST", "/api/clips/"+clipID+"/access", why)
	require.Equal(t, 200, code, "%s", body)
	var grant struct {
		URL     string    `json:"url"`
		Expires time.Time `json:"expires"`
	}
	require.NoError(t, json.Unmarshal(body, &grant))
	assert.WithinDuration(t, time.Now().Add(5*time.Minute), grant.Expires, time.Minute)
	assert.NotContains(t, grant.URL, w.minio.SecretKey, "store credentials never leave Vigil")
	resp, err := http.Get(grant.URL)
	require.NoError(t, err)
	footage, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	sum := sha256.Sum256(footage)
	assert.Equal(t, rec.Clip.SHA256, hex.EncodeToString(sum[:]), "the presigned URL serves the original clip")

	// Release: requested by the investigator, exported only after another
	// person with the IG role approves.
	code, body = w.call(t, ian, "POST", "/api/releases", `{"incident":"`+incident+`","crime_reference":"WY/123456/26",
		"officer":"DC 4242 Smith","force":"West Yorkshire Police","exhibit_reference":"JS/1","why":"police investigation of the assault"}`)
	require.Equal(t, http.StatusCreated, code, "%s", body)
	var rel struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &rel))
	pkg := filepath.Join(t.TempDir(), "JS1.zip")
	out, err := w.as(t, ian, "evidence", "export", "--request", rel.ID, "--out", pkg)
	require.Error(t, err, "%s", out)
	assert.Contains(t, out, "only after an IG officer other than the requester approves it")
	assert.NoFileExists(t, pkg)
	out, err = w.as(t, iggy, "release", "approve", rel.ID, "--reason", "lawful basis: prevention and detection of crime")
	require.NoError(t, err, "%s", out)
	out, err = w.as(t, ingrid, "release", "refuse", rel.ID, "--reason", "a second decision must be refused")
	require.Error(t, err, "%s", out)
	assert.Contains(t, out, "already approved by iggy")
	out, err = w.as(t, ian, "evidence", "export", "--request", rel.ID, "--out", pkg)
	require.NoError(t, err, "%s", out)
	// The same package through the API.
	code, zipped := w.call(t, ian, "GET", "/api/releases/"+rel.ID+"/package", "")
	require.Equal(t, 200, code, "%s", zipped)
	apiPkg := filepath.Join(t.TempDir(), "api.zip")
	require.NoError(t, os.WriteFile(apiPkg, zipped, 0o600))

	pub, err := exec.Command(vigilBin, "evidence", "pubkey", "--state", w.state).Output()
	require.NoError(t, err)
	verify := buildVerify(t)
	for _, p := range []string{pkg, apiPkg} {
		out, err := exec.Command(verify, "--pubkey", strings.TrimSpace(string(pub)), p).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), rec.Clip.ID)
		b, _ := os.ReadFile(p)
		for _, secret := range []string{"Nurse 2", other.Clip.ID} {
			assert.NotContains(t, string(b), secret, "the package reveals nothing of other wearers")
		}
	}
	// One changed payload byte and vigil-verify names the clip.
	b, err := os.ReadFile(pkg)
	require.NoError(t, err)
	i := strings.Index(string(b), string(footage[:64]))
	require.GreaterOrEqual(t, i, 0, "the clip is stored byte for byte")
	b[i+10] ^= 0xff
	bad := filepath.Join(t.TempDir(), "bad.zip")
	require.NoError(t, os.WriteFile(bad, b, 0o600))
	out2, err := exec.Command(verify, "--pubkey", strings.TrimSpace(string(pub)), bad).CombinedOutput()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "%v %s", err, out2)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Contains(t, string(out2), "data/cam-1/"+rec.Clip.ID)

	// The IG view: who saw the footage and why; refused attempts flagged.
	out, err = w.as(t, ian, "audit", "report", "--format", "csv")
	require.Error(t, err, "%s", out)
	assert.Contains(t, out, "role investigator may not read audit")
	out, err = w.as(t, iggy, "audit", "report", "--format", "csv", "--from", time.Now().Add(-time.Hour).Format(time.RFC3339))
	require.NoError(t, err, "%s", out)
	assert.Contains(t, out, "reviewing the assault on Nurse 1")
	assert.Contains(t, out, "clip.view")
	assert.Contains(t, out, "release.export")
	assert.Contains(t, out, "refused")
	out, err = w.as(t, iggy, "sar", "--wearer", "Nurse 1")
	require.NoError(t, err, "%s", out)
	assert.Contains(t, out, rec.Clip.ID)
	assert.Contains(t, out, "ian")

	// Seals of the audit trail are in the bucket under COMPLIANCE lock, and
	// the trail verifies.
	waitFor(t, 20*time.Second, "an audit seal in the bucket", func() bool {
		l, err := w.aws.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("audit/seals/")})
		return err == nil && len(l.Contents) > 0
	})
	out, err = w.as(t, iggy, "audit", "verify")
	require.NoError(t, err, "%s", out)
	assert.Contains(t, out, "audit trail: OK")
}
