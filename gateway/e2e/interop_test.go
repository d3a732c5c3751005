package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

// TestIndependentDC09Receiver points `vigil run --arc` at a DC-09 receiver
// written by someone else (npm iobroker.sia, installed by
// deploy/testenv/install.sh into $VIGIL_SIA_DIR) and checks that it accepts
// the duress frame: valid CRC, length and account, answered with ACK.
func TestIndependentDC09Receiver(t *testing.T) {
	siaDir := os.Getenv("VIGIL_SIA_DIR")
	node, nodeErr := exec.LookPath("node")
	if siaDir == "" || nodeErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("VIGIL_SIA_DIR and node are required in CI: run through make test")
		}
		t.Skip("set VIGIL_SIA_DIR (make test does) to run the interop test")
	}
	script, err := filepath.Abs("testdata/sia-receiver.js")
	require.NoError(t, err)
	addr := testnet.ClosedAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(node, script)
	cmd.Dir = siaDir
	// TIMEOUT=20: it also NAKs a frame whose timestamp is more than 20 s off.
	cmd.Env = append(os.Environ(), "PORT="+port, "ACCOUNTS="+arcAccount, "TIMEOUT=20", "NODE_PATH="+filepath.Join(siaDir, "node_modules"))
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = &prefixWriter{t: t, prefix: "sia-receiver: "}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ch := make(chan string, 1000)
	go lines(out, ch)
	waitLine := func(prefix string) string {
		deadline := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-ch:
				require.True(t, ok, "receiver exited before printing %s", prefix)
				t.Log("sia-receiver: " + l)
				if strings.HasPrefix(l, "REJECTED") {
					t.Fatalf("the independent receiver rejected our frame: %s", l)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-deadline:
				t.Fatalf("no %s line from the receiver", prefix)
			}
		}
	}
	waitLine("LISTENING")

	state := t.TempDir()
	addDevice(t, state, site, "btn-0001", "Nurse A")
	broker := testnet.ClosedAddr(t)
	// It NAKs NULL link tests (it wants data), so link tests are off here.
	arcURL := "tcp://" + addr + "?account=" + arcAccount + "&receiver=1&prefix=1&format=adm-cid&link_test=off"
	v := startVigil(t, state, "--broker-listen", broker, "--arc", arcURL)
	b := button(t, "tcp://"+broker, "btn-0001")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	press, err := b.Duress(ctx)
	require.NoError(t, err)

	line := waitLine("EVENT ")
	var ev struct {
		ID  string `json:"id"`
		Act string `json:"act"`
		Msg string `json:"msg"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "EVENT ")), &ev))
	assert.Equal(t, "ADM-CID", ev.ID)
	assert.Equal(t, arcAccount, ev.Act)
	assert.Equal(t, "#1234|1121 01 001", ev.Msg)

	_, err = b.WaitReceived(ctx, press.Seq)
	require.NoError(t, err, "its ACK counts as delivery and the wearer is told")
	al := v.alerts(t)
	require.Len(t, al.Alerts, 1)
	assert.Equal(t, "delivered", al.Alerts[0].State)
}
