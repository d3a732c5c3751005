package broker

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Close while clients are connecting: every round must close promptly, and
// under -race nothing may be reported. With mochi's own listener this
// reported a race (its clients' WaitGroup Add against Close's Wait,
// mochi-mqtt/server#541) and, rarely, hung: closeListenerClients takes the
// clients read lock twice, and a connecting client's Clients.Add waiting
// for the write lock in between deadlocks both.
func TestCloseWhileClientsConnect(t *testing.T) {
	// A CONNECT packet: MQTT 3.1.1, clean session, keepalive 30, client id
	// "c" and a number, each connection its own client as devices are.
	var ids atomic.Int64
	connect := func() []byte {
		id := fmt.Sprintf("c%d", ids.Add(1))
		p := []byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, byte(len(id))}
		return append(p, id...)
	}
	for range 30 {
		b, err := Start(Config{Addr: "127.0.0.1:0"})
		require.NoError(t, err)
		addr := b.Addr()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						continue // closed: keep trying until told to stop
					}
					_, _ = c.Write(connect())
					_ = c.Close()
				}
			})
		}
		time.Sleep(5 * time.Millisecond) // let connections be under way, not a wait for a condition
		closed := make(chan error, 1)
		go func() { closed <- b.Close() }()
		select {
		case err := <-closed:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return while clients were connecting")
		}
		close(stop)
		wg.Wait()
	}
}
