package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/evidence/objstore/s3test"
	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
	"github.com/vigil-gw/vigil/gateway/app"
)

// scaleButtons is how many buttons each site of the scale-out test has;
// the first is paired with the site's camera.
const scaleButtons = 3

// scaleHeartbeats is how many heartbeats each button sends.
const scaleHeartbeats = 2

// scaleSite is one site of a Trust: its own gateway process with its own
// gateway id (so MQTT client id and ledger origin), state directory (so
// ledger and audit keys), API port, DC-09 account and key prefix in the
// Trust's one bucket, subscribed to its own site's events only.
type scaleSite struct {
	name    string
	account string // DC-09 account at the shared ARC receiver
	state   string
	config  string
	vigil   *proc
	camera  string // cam-NAME, paired with buttons[0]
	token   string // the camera's upload token
	buttons []string
	zones   map[string]string // device → ADM-CID zone ("001")
}

func (s *scaleSite) prefix() string { return "gw-" + s.name }

// cli runs a vigil command against this gateway's state and configuration,
// as the holder of token ("" for none).
func (s *scaleSite) cli(t *testing.T, token string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(vigilBin, append(args, "--state", s.state, "--config", s.config)...)
	if token != "" {
		cmd.Env = append(os.Environ(), "VIGIL_TOKEN="+token)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestScaleThreeSitesOneBrokerOneBucket: a Trust with three sites runs a
// gateway per site, as three vigil processes, against one Mosquitto and one
// object-locked MinIO bucket. Each gateway lists its own site in
// mqtt.sites, has its own gateway id, state, ledger key, API, DC-09 account
// and bucket prefix. Every event is handled by exactly one gateway (the
// right one), a device registered at one site that reports from another is
// refused there as it would be on one gateway, every gateway's ledger
// verifies on its own with its own key, and a police package from each
// gateway verifies with vigil-verify.
func TestScaleThreeSitesOneBrokerOneBucket(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Mosquitto and MinIO")
	}
	started := time.Now()
	broker := startMosquitto(t)
	minio := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", minio.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", minio.SecretKey)
	rcv := startARC(t, nil) // one ARC, one account per site
	verifyBin := buildVerify(t)

	// A wildcard in mqtt.sites would widen the subscription to other
	// sites' events: the gateway refuses to start, saying why.
	bad := writeConfig(t, "mqtt:\n  url: "+broker+"\n  sites: [north, \"+\"]\n")
	out, err := exec.Command(vigilBin, "run", "--config", bad, "--state", t.TempDir()).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), `mqtt.sites[1]: "+" must be 1-64 of A-Z a-z 0-9 _ -`)

	out, err = exec.Command(vigilBin, "evidence", "init-bucket", "--state", t.TempDir(), "--s3", minio.URL(bucket)).CombinedOutput()
	require.NoError(t, err, "%s", out)

	sites := []*scaleSite{{name: "north", account: "5001"}, {name: "south", account: "5002"}, {name: "east", account: "5003"}}
	for _, s := range sites {
		s.setup(t, broker, rcv, minio.URL(bucket)+"/"+s.prefix())
	}
	t.Logf("three gateways up after %s", time.Since(started).Round(time.Millisecond))

	// Every button of every site heartbeats and presses duress; each hears
	// "help is coming" from its own gateway.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type pressed struct {
		site *scaleSite
		b    *firmwaresim.Button
		seq  uint64
	}
	var presses []pressed
	for _, s := range sites {
		for _, id := range s.buttons {
			b := siteButton(t, broker, s.name, id)
			for range scaleHeartbeats {
				_, err := b.Heartbeat(ctx)
				require.NoError(t, err)
			}
			p, err := b.Duress(ctx)
			require.NoError(t, err)
			presses = append(presses, pressed{s, b, p.Seq})
		}
	}
	for _, p := range presses {
		_, err := p.b.WaitReceived(ctx, p.seq)
		require.NoError(t, err, "%s at %s hears that help is coming", p.b.Device(), p.site.name)
	}

	// A north button reporting from south's topic: south's gateway does not
	// know it, so refuses its heartbeat and raises its duress unverified
	// (never dropped, never sent to the ARC as verified), exactly as one
	// gateway does for a device registered at another site.
	stray := siteButton(t, broker, "south", sites[0].buttons[1])
	_, err = stray.Heartbeat(ctx)
	require.NoError(t, err)
	strayPress, err := stray.Duress(ctx)
	require.NoError(t, err)
	require.NoError(t, stray.Flush(ctx))

	// Each camera records a clip after its wearer's duress: evidential
	// footage for the incident, uploaded under its gateway's prefix.
	clips := map[string]firmwaresim.ClipReport{}
	incidents := map[string]string{}
	for _, s := range sites {
		incidents[s.name] = s.duressAlert(t, s.buttons[0])
		cam := s.startCamera(t, broker)
		r, err := cam.Record(ctx)
		require.NoError(t, err)
		require.Equal(t, firmwaresim.OutcomeAccepted, r.Upload.Outcome, "%+v", r.Upload)
		clips[s.name] = r
	}
	for _, s := range sites {
		waitFor(t, 30*time.Second, s.name+"'s clip verified in the store", func() bool {
			st := s.evidenceStatus(t)
			return st.Clips == 1 && st.Backlog == 0
		})
	}
	south := sites[1]
	waitFor(t, 10*time.Second, "south to refuse the stray heartbeat and raise its duress", func() bool {
		return metric(t, south.vigil.http, `vigil_events_rejected_total{reason="device"}`) == 1 &&
			south.hasAlert(t, fmt.Sprintf("%s:%d", stray.Device(), strayPress.Seq))
	})

	// Exactly once, by the right gateway: at the ARC every site's buttons
	// arrive under its own account, once each, and nothing else does.
	// The wearers heard back once their gateway had the ARC's ACK, so the
	// frames are in; a moment more lets a stray duplicate show up.
	waitFor(t, 10*time.Second, "every duress at the ARC", func() bool {
		n := 0
		for _, f := range rcv.Frames() {
			if f.Frame.ID != "NULL" {
				n++
			}
		}
		return n >= len(presses)
	})
	byAccount := map[string]map[string]int{}
	for _, f := range rcv.Frames() {
		if f.Frame.ID == "NULL" {
			continue
		}
		zone := f.Frame.Data[strings.LastIndexByte(f.Frame.Data, ' ')+1:]
		if byAccount[f.Frame.Account] == nil {
			byAccount[f.Frame.Account] = map[string]int{}
		}
		byAccount[f.Frame.Account][zone]++
	}
	want := map[string]map[string]int{}
	for _, s := range sites {
		want[s.account] = map[string]int{}
		for _, id := range s.buttons {
			want[s.account][s.zones[id]] = 1
		}
	}
	assert.Equal(t, want, byAccount, "ARC frames per account and zone")

	for _, s := range sites {
		strays := 0
		if s == south {
			strays = 1
		}
		assert.Equal(t, len(s.buttons)+strays, metric(t, s.vigil.http, `vigil_events_total{source="mqtt",type="duress"}`), "%s: duress journaled", s.name)
		assert.Equal(t, len(s.buttons)*scaleHeartbeats, metric(t, s.vigil.http, `vigil_events_total{source="mqtt",type="heartbeat"}`), "%s: heartbeats journaled", s.name)
		assert.Equal(t, 1, metric(t, s.vigil.http, `vigil_events_total{source="mqtt",type="clip_ready"}`), "%s: clip_ready journaled", s.name)
		assert.Equal(t, strays, metric(t, s.vigil.http, `vigil_events_rejected_total{reason="device"}`), "%s: refused devices", s.name)
		assert.Zero(t, metric(t, s.vigil.http, "vigil_events_duplicate_total"), "%s: duplicates", s.name)
		var devs []string
		for _, a := range s.vigil.alerts(t).Alerts {
			if a.Event != "duress" {
				continue
			}
			devs = append(devs, a.Device)
			assert.Equal(t, slices.Contains(s.buttons, a.Device), a.Verified, "%s: %s verified only if registered here", s.name, a.Device)
		}
		wantDevs := slices.Clone(s.buttons)
		if s == south {
			wantDevs = append(wantDevs, stray.Device())
		}
		assert.ElementsMatch(t, wantDevs, devs, "%s: duress alerts", s.name)
	}

	// One bucket, one prefix per gateway: every object is under one of
	// them, each gateway's clip under its own.
	keys := bucketKeys(t, minio)
	for _, k := range keys {
		p, _, _ := strings.Cut(k, "/")
		assert.Contains(t, []string{"gw-north", "gw-south", "gw-east"}, p, "object %s outside every gateway's prefix", k)
	}
	for _, s := range sites {
		clip := clips[s.name].Clip
		wantKey := fmt.Sprintf("%s/clips/%s/%s/%s/%s", s.prefix(), s.name, s.camera, clip.Start.UTC().Format("2006/01/02"), clip.ID)
		assert.Contains(t, keys, wantKey)
	}

	// Each ledger verifies on its own, deep (every stored object re-read),
	// with the other gateways' objects in the same bucket.
	pubkeys := map[string]string{}
	for _, s := range sites {
		out, err := s.cli(t, "", "evidence", "verify", "--deep")
		require.NoError(t, err, "%s: %s", s.name, out)
		assert.Contains(t, out, "OK", s.name)
		assert.NotContains(t, out, "PROBLEM", s.name)
		out, err = s.cli(t, "", "evidence", "pubkey")
		require.NoError(t, err, "%s", out)
		pubkeys[s.name] = strings.TrimSpace(out)
		assert.True(t, strings.HasPrefix(pubkeys[s.name], "vigil/vigil-"+s.name+"/evidence+"), "%s: its own ledger origin: %s", s.name, pubkeys[s.name])
	}
	assert.Len(t, uniq(pubkeys), len(sites), "no gateway shares a signing key")

	// A police package from each gateway through the release flow verifies
	// with that gateway's key, and only with it.
	for i, s := range sites {
		pkg := s.policePackage(t, incidents[s.name])
		out, err := exec.Command(verifyBin, "--pubkey", pubkeys[s.name], pkg).CombinedOutput()
		require.NoError(t, err, "%s: %s", s.name, out)
		assert.Contains(t, string(out), clips[s.name].Clip.ID)
		other := sites[(i+1)%len(sites)]
		out, err = exec.Command(verifyBin, "--pubkey", pubkeys[other.name], pkg).CombinedOutput()
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "%s's package must not verify with %s's key: %v %s", s.name, other.name, err, out)
	}
	t.Logf("scale-out test took %s", time.Since(started).Round(time.Millisecond))
}

// setup registers the site's devices in its own state and starts its
// gateway on the shared broker, receiver and bucket (s3URL carries the
// gateway's prefix).
func (s *scaleSite) setup(t *testing.T, broker string, rcv *arc, s3URL string) {
	t.Helper()
	s.state = t.TempDir()
	s.camera = "cam-" + s.name
	tokFile := filepath.Join(t.TempDir(), "token")
	out, err := exec.Command(vigilBin, "device", "add", s.camera, "--kind", "camera", "--site", s.name, "--wearer", "Nurse "+s.name,
		"--state", s.state, "--token-file", tokFile).CombinedOutput()
	require.NoError(t, err, "%s", out)
	tok, err := os.ReadFile(tokFile)
	require.NoError(t, err)
	s.token = strings.TrimSpace(string(tok))
	reg := app.OpenRegistry(s.state)
	for i := 1; i <= scaleButtons; i++ {
		d := registry.Device{ID: fmt.Sprintf("btn-%s-%d", s.name, i), Kind: registry.KindButton, Site: s.name, Wearer: fmt.Sprintf("Nurse %s %d", s.name, i)}
		if i == 1 {
			d.Wearer, d.Camera = "Nurse "+s.name, s.camera
		}
		_, err := reg.Add(d, time.Now())
		require.NoError(t, err)
		s.buttons = append(s.buttons, d.ID)
	}
	list, err := reg.List()
	require.NoError(t, err)
	s.zones = map[string]string{}
	for _, d := range list {
		s.zones[d.ID] = fmt.Sprintf("%03d", d.Zone)
	}
	s.config = writeConfig(t, fmt.Sprintf(`site: %[1]s
gateway_id: vigil-%[1]s
mqtt:
  url: %[2]s
  sites: [%[1]s]
arc:
  - url: "tcp://%[3]s?account=%[4]s&receiver=1&prefix=1&format=adm-cid"
evidence:
  s3: %[5]s
`, s.name, broker, rcv.addr, s.account, s3URL))
	// The harness names every gateway vigil-e2e; a later flag wins.
	s.vigil = startVigil(t, s.state, "--config", s.config, "--gateway-id", "vigil-"+s.name)
}

// siteButton connects a simulated button publishing as device at site.
func siteButton(t *testing.T, broker, site, device string) *firmwaresim.Button {
	t.Helper()
	b, err := firmwaresim.NewButton(firmwaresim.ButtonConfig{Broker: broker, Site: site, Device: device, Lat: 53.8, Lon: -1.55, AccM: 8,
		SeqFile: filepath.Join(t.TempDir(), "seq")})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, b.Connect(ctx))
	t.Cleanup(b.Close)
	return b
}

func (s *scaleSite) startCamera(t *testing.T, broker string) *firmwaresim.Camera {
	t.Helper()
	c, err := firmwaresim.NewCamera(firmwaresim.CameraConfig{Broker: broker, Site: s.name, Device: s.camera, Gateway: "http://" + s.vigil.http,
		Token: s.token, Dir: t.TempDir(), ClipSize: 256 << 10, ClipLength: 50 * time.Millisecond, SeqFile: filepath.Join(t.TempDir(), "seq"),
		Format: firmwaresim.FormatRandom})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	t.Cleanup(c.Close)
	return c
}

// duressAlert returns the id of device's duress alert (the incident).
func (s *scaleSite) duressAlert(t *testing.T, device string) string {
	t.Helper()
	var id string
	waitFor(t, 10*time.Second, device+"'s duress alert", func() bool {
		for _, a := range s.vigil.alerts(t).Alerts {
			if a.Device == device && a.Event == "duress" {
				id = a.ID
			}
		}
		return id != ""
	})
	return id
}

func (s *scaleSite) hasAlert(t *testing.T, key string) bool {
	t.Helper()
	for _, a := range s.vigil.alerts(t).Alerts {
		if a.Key == key {
			return true
		}
	}
	return false
}

func (s *scaleSite) evidenceStatus(t *testing.T) evidenceStatus {
	t.Helper()
	code, body := s.vigil.api(t, http.MethodGet, "/api/evidence/status", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	var st evidenceStatus
	require.NoError(t, json.Unmarshal(body, &st))
	return st
}

// policePackage runs the release flow on this gateway: an IG officer
// assigns the incident to an investigator, who requests the release; the
// IG officer approves it, and the investigator downloads the package.
func (s *scaleSite) policePackage(t *testing.T, incident string) string {
	t.Helper()
	user := func(name, role string) string {
		out, err := exec.Command(vigilBin, "user", "add", name, "--role", role, "--token", "--state", s.state).Output()
		require.NoError(t, err)
		return strings.TrimSpace(string(out))
	}
	ian, iggy := user("ian", "investigator"), user("iggy", "ig_officer")
	call := func(token, method, path, body string, want int) []byte {
		code, resp := callURL(t, s.vigil.client, s.vigil.scheme+"://"+s.vigil.http, token, method, path, body)
		require.Equal(t, want, code, "%s %s on %s: %s", method, path, s.name, resp)
		return resp
	}
	call(iggy, http.MethodPost, "/api/incidents/"+incident+"/assign", `{"user":"ian","why":"investigation of the assault at `+s.name+`"}`, http.StatusOK)
	body := call(ian, http.MethodPost, "/api/releases", `{"incident":"`+incident+`","crime_reference":"WY/`+s.account+`/26",
		"officer":"DC 4242 Smith","force":"West Yorkshire Police","exhibit_reference":"JS/`+s.account+`","why":"police investigation of the assault"}`, http.StatusCreated)
	var rel struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &rel))
	call(iggy, http.MethodPost, "/api/releases/"+rel.ID+"/approve", `{"reason":"lawful basis: prevention and detection of crime"}`, http.StatusOK)
	zipped := call(ian, http.MethodGet, "/api/releases/"+rel.ID+"/package", "", http.StatusOK)
	pkg := filepath.Join(t.TempDir(), s.name+".zip")
	require.NoError(t, os.WriteFile(pkg, zipped, 0o600))
	return pkg
}

// bucketKeys lists every object key in the bucket.
func bucketKeys(t *testing.T, m *s3test.Server) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(m.AWSClient(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(t, err)
		for _, o := range page.Contents {
			keys = append(keys, *o.Key)
		}
	}
	return keys
}

func uniq(m map[string]string) map[string]bool {
	out := map[string]bool{}
	for _, v := range m {
		out[v] = true
	}
	return out
}
