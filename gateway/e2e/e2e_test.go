package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
	"github.com/vigil-gw/vigil/gateway/forward/dc09"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

const site = "leeds"

var hookSecret = []byte("e2e-webhook-secret")

func secretFile(t testing.TB) string {
	p := filepath.Join(t.TempDir(), "webhook.secret")
	require.NoError(t, os.WriteFile(p, append(hookSecret, '\n'), 0o600))
	return p
}

func button(t testing.TB, broker, device string) *firmwaresim.Button {
	t.Helper()
	b, err := firmwaresim.NewButton(firmwaresim.ButtonConfig{Broker: broker, Site: site, Device: device, Lat: 53.8008, Lon: -1.5491, AccM: 8, Battery: 87})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, b.Connect(ctx))
	t.Cleanup(b.Close)
	return b
}

// TestDuressEndToEnd: simulator → broker → Vigil → DC-09 receiver and webhook,
// and back to the button, with the embedded broker and with Mosquitto.
func TestDuressEndToEnd(t *testing.T) {
	for _, brokerKind := range []string{"embedded", "mosquitto"} {
		t.Run(brokerKind, func(t *testing.T) {
			state := t.TempDir()
			addDevice(t, state, site, "btn-0001", "Nurse A")
			rcv := startARC(t, nil)
			hk := startHooks(t, hookSecret)
			args := []string{"--arc", rcv.url(), "--webhook", hk.srv.URL, "--webhook-secret-file", secretFile(t)}
			var broker string
			if brokerKind == "embedded" {
				addr := testnet.ClosedAddr(t)
				args = append(args, "--broker-listen", addr)
				broker = "tcp://" + addr
			} else {
				broker = startMosquitto(t)
				args = append(args, "--mqtt", broker)
			}
			v := startVigil(t, state, args...)

			b := button(t, broker, "btn-0001")
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			press, err := b.Duress(ctx)
			require.NoError(t, err)
			rtt, err := b.WaitReceived(ctx, press.Seq)
			require.NoError(t, err, "the wearer hears that help is coming")
			t.Logf("%s: duress round trip %s", brokerKind, rtt)

			alarm := rcv.lastAlarm()
			require.NotNil(t, alarm, "the ARC holds the frame")
			assert.Equal(t, "ADM-CID", alarm.Frame.ID)
			assert.Equal(t, arcAccount, alarm.Frame.Account)
			assert.Contains(t, alarm.Frame.Data, "|1121 01 001", "new duress event, partition 01, zone 001")
			xdata := strings.Join(alarm.Frame.XData, "|")
			assert.Contains(t, xdata, "X-1.549100")
			assert.Contains(t, xdata, "Y53.800800")
			assert.Contains(t, xdata, "Nurse A")

			key := fmt.Sprintf("btn-0001:%d", press.Seq)
			waitFor(t, 5*time.Second, "webhook delivery", func() bool { k, _ := hk.snapshot(); return k[key] > 0 })
			_, bad := hk.snapshot()
			assert.Zero(t, bad, "every webhook signature verified")

			al := v.alerts(t)
			require.Len(t, al.Alerts, 1)
			assert.Equal(t, key, al.Alerts[0].Key)
			assert.Equal(t, "delivered", al.Alerts[0].State)
			assert.True(t, al.Alerts[0].Verified)
			assert.Equal(t, "Nurse A", al.Alerts[0].Wearer)
			assert.Zero(t, al.Undelivered)

			// An unregistered button is surfaced to people, unverified, and
			// never sent to the ARC as a verified alarm.
			stranger := button(t, broker, "btn-9999")
			p2, err := stranger.Duress(ctx)
			require.NoError(t, err)
			_, err = stranger.WaitReceived(ctx, p2.Seq)
			require.NoError(t, err)
			k2 := fmt.Sprintf("btn-9999:%d", p2.Seq)
			waitFor(t, 5*time.Second, "unverified webhook", func() bool { k, _ := hk.snapshot(); return k[k2] > 0 })
			assert.Len(t, rcv.alarms(), 1, "the ARC got only the verified alarm")
			al = v.alerts(t)
			require.Len(t, al.Alerts, 2)
			for _, a := range al.Alerts {
				assert.Equal(t, a.Key == k2, !a.Verified, a.Key)
			}

			// Acknowledge and resolve through the API.
			id := strings.ReplaceAll(key, ":", ".")
			post(t, v, "/api/alerts/"+id+"/ack", `{"note":"calling her"}`, http.StatusOK)
			post(t, v, "/api/alerts/"+id+"/note", `{"note":"police en route"}`, http.StatusOK)
			post(t, v, "/api/alerts/"+id+"/resolve", `{"outcome":"genuine_police_attended","note":"wearer safe"}`, http.StatusOK)
			post(t, v, "/api/alerts/"+id+"/resolve", `{"outcome":"test"}`, http.StatusConflict)
			post(t, v, "/api/alerts/nope/ack", `{}`, http.StatusNotFound)
			post(t, v, "/api/alerts/"+id+"/ack", `{"who":"x"}`, http.StatusBadRequest)
			code, body := v.api(t, http.MethodGet, "/api/alerts/"+id, "")
			require.Equal(t, http.StatusOK, code)
			var got struct {
				AcknowledgedBy string `json:"acknowledged_by"`
				ResolvedBy     string `json:"resolved_by"`
				Outcome        string `json:"outcome"`
				Notes          []struct{ By, Text string }
			}
			require.NoError(t, json.Unmarshal(body, &got))
			assert.Equal(t, "e2e admin", got.AcknowledgedBy, "who acted is the token's holder")
			assert.Equal(t, "e2e admin", got.ResolvedBy)
			assert.Equal(t, "genuine_police_attended", got.Outcome)
			require.Len(t, got.Notes, 3)
			assert.Equal(t, "police en route", got.Notes[1].Text)
		})
	}
}

func post(t testing.TB, v *proc, path, body string, want int) {
	t.Helper()
	code, resp := v.api(t, http.MethodPost, path, body)
	assert.Equal(t, want, code, "POST %s %s: %s", path, body, resp)
}

// TestEscalationToBackupARC: the primary receiver stays silent, so after the
// configured delay the backup gets the alarm too; NAKs are corrected.
func TestEscalationToBackupARC(t *testing.T) {
	state := t.TempDir()
	addDevice(t, state, site, "btn-0001", "Nurse A")
	silent := startARC(t, func(dc09.Frame) dc09.Response { return dc09.RespondSilent })
	var nakOnce sync.Once
	backup := startARC(t, func(f dc09.Frame) dc09.Response {
		resp := dc09.RespondACK
		if f.ID != "NULL" {
			nakOnce.Do(func() { resp = dc09.RespondNAK })
		}
		return resp
	})
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
arc:
  - url: %q
  - url: %q
alerts:
  escalate_after: 500ms
  ack_timeout: 300ms
`, silent.url(), backup.url())), 0o600))
	broker := testnet.ClosedAddr(t)
	v := startVigil(t, state, "--config", cfg, "--broker-listen", broker)
	b := button(t, "tcp://"+broker, "btn-0001")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	press, err := b.Duress(ctx)
	require.NoError(t, err)
	_, err = b.WaitReceived(ctx, press.Seq)
	require.NoError(t, err, "the backup's ACK confirms to the wearer")
	assert.Equal(t, 1, backup.alarms()["001"], "escalated exactly once")
	assert.Empty(t, silent.alarms(), "a silent receiver accepted nothing")
	states := map[string]string{}
	for _, a := range v.alerts(t).Alerts {
		states[strings.SplitN(a.ID, ".", 3)[0]+"."+strings.SplitN(a.ID, ".", 3)[1]] = a.State
	}
	assert.Equal(t, "delivered", states[fmt.Sprintf("btn-0001.%d", press.Seq)])
	assert.Equal(t, "raised", states["sys.arc_link_down"], "the silent primary raised an alert of its own")
}

// TestEncryptedDC09: with key= in the --arc URL the alarm travels AES-encrypted
// ("*ADM-CID") and the receiver, holding the same key, accepts and ACKs it.
func TestEncryptedDC09(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef") // AES-256
	state := t.TempDir()
	addDevice(t, state, site, "btn-0001", "Nurse A")
	rcv := startARCWithKey(t, nil, key)
	broker := testnet.ClosedAddr(t)
	startVigil(t, state, "--broker-listen", broker, "--arc", rcv.url()+"&key="+hex.EncodeToString(key))
	b := button(t, "tcp://"+broker, "btn-0001")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	press, err := b.Duress(ctx)
	require.NoError(t, err)
	_, err = b.WaitReceived(ctx, press.Seq)
	require.NoError(t, err)
	alarm := rcv.lastAlarm()
	require.NotNil(t, alarm)
	assert.True(t, alarm.Frame.Encrypted)
	assert.Contains(t, string(alarm.Raw), `"*ADM-CID"`)
	assert.NotContains(t, string(alarm.Raw), "Nurse A", "the wearer's name is not on the wire in clear")
	assert.Contains(t, alarm.Frame.Data, "|1121 01 001")
}
