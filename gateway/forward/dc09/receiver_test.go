package dc09

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startReceiver serves r on a loopback port until the test ends and returns
// the address.
func startReceiver(t *testing.T, r *Receiver) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return ln.Addr().String()
}

// peer is a raw test connection to a receiver.
type peer struct {
	t    *testing.T
	conn net.Conn
	rd   *frameReader
	key  []byte
}

func dialPeer(t *testing.T, addr string, key []byte) *peer {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	return &peer{t: t, conn: conn, rd: newFrameReader(conn), key: key}
}

func (p *peer) write(b []byte) {
	p.t.Helper()
	_, err := p.conn.Write(b)
	require.NoError(p.t, err)
}

func (p *peer) read() Frame {
	p.t.Helper()
	raw, err := p.rd.next()
	require.NoError(p.t, err)
	f, err := ParseFrame(raw, p.key)
	require.NoError(p.t, err)
	return f
}

func nullFrame(t *testing.T, seq int, key []byte) []byte {
	t.Helper()
	f := Frame{ID: IDNull, Seq: seq, Receiver: "12", Prefix: "3", Account: "1234", Timestamp: time.Now(), HasTimestamp: true}
	b, err := f.Encode(key)
	require.NoError(t, err)
	return b
}

func TestReceiverACKsEchoingHeader(t *testing.T) {
	for keyName, key := range testKeys {
		t.Run(keyName, func(t *testing.T) {
			r := &Receiver{Key: key}
			p := dialPeer(t, startReceiver(t, r), key)
			p.write(nullFrame(t, 42, key))
			ack := p.read()
			assert.Equal(t, IDACK, ack.ID)
			assert.Equal(t, 42, ack.Seq)
			assert.Equal(t, "12", ack.Receiver)
			assert.Equal(t, "3", ack.Prefix)
			assert.Equal(t, "1234", ack.Account)
			assert.Equal(t, key != nil, ack.Encrypted, "ACK is encrypted when the frame was")
			assert.Equal(t, key != nil, ack.HasTimestamp, "encrypted ACKs carry a timestamp")

			frames := r.Frames()
			require.Len(t, frames, 1)
			assert.Equal(t, IDNull, frames[0].Frame.ID)
			assert.Equal(t, RespondACK, frames[0].Response)
			assert.Zero(t, r.Rejected())
		})
	}
}

func TestReceiverUnencryptedACKMatchesSpecForm(t *testing.T) {
	p := dialPeer(t, startReceiver(t, &Receiver{}), nil)
	f := Frame{ID: IDADMCID, Seq: 1, Receiver: "000001", Prefix: "000000", Account: "000000", Data: "#000000|1602 01 000"}
	b, err := f.Encode(nil)
	require.NoError(t, err)
	p.write(b)
	raw, err := p.rd.next()
	require.NoError(t, err)
	assert.Equal(t, "\n5C410020\"ACK\"0001R000001L000000#000000[]\r", string(raw))
}

func TestReceiverManyFramesAndConnections(t *testing.T) {
	r := &Receiver{}
	addr := startReceiver(t, r)
	const conns, perConn = 8, 5
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if !assert.NoError(t, err) {
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			// All frames in one write: the receiver must split them.
			var batch []byte
			for i := 1; i <= perConn; i++ {
				f := Frame{ID: IDADMCID, Seq: c*100 + i, Account: "1234", Data: "#1234|1121 01 001", Timestamp: time.Now(), HasTimestamp: true}
				b, err := f.Encode(nil)
				assert.NoError(t, err)
				batch = append(batch, b...)
			}
			_, err = conn.Write(batch)
			assert.NoError(t, err)
			rd := newFrameReader(conn)
			for i := 1; i <= perConn; i++ {
				raw, err := rd.next()
				if !assert.NoError(t, err) {
					return
				}
				ack, err := ParseFrame(raw, nil)
				assert.NoError(t, err)
				assert.Equal(t, IDACK, ack.ID)
				assert.Equal(t, c*100+i, ack.Seq)
			}
		}()
	}
	wg.Wait()
	assert.Len(t, r.Frames(), conns*perConn)
}

func TestReceiverPartialFrame(t *testing.T) {
	p := dialPeer(t, startReceiver(t, &Receiver{}), nil)
	b := nullFrame(t, 7, nil)
	p.write(b[:5])
	p.write(b[5:])
	assert.Equal(t, 7, p.read().Seq)
}

func TestReceiverRejectsDamagedFramesSilently(t *testing.T) {
	r := &Receiver{}
	p := dialPeer(t, startReceiver(t, r), nil)
	bad := nullFrame(t, 1, nil)
	bad[len(bad)-2] ^= 0x01 // flip a bit in the region: the CRC no longer matches
	p.write(bad)
	p.write([]byte("\n0000000A\"NULL\"0002\r")) // LEN wrong
	p.write(nullFrame(t, 3, nil))
	// The first answer is to the good frame: the damaged ones got none.
	assert.Equal(t, 3, p.read().Seq)
	assert.Equal(t, 2, r.Rejected())
	assert.Len(t, r.Frames(), 1)
}

func TestReceiverDUH(t *testing.T) {
	key := testKeys["AES-128"]
	cases := map[string]struct {
		frame func(t *testing.T) []byte
		seq   int
	}{
		"unknown ID": {func(t *testing.T) []byte {
			b, err := Frame{ID: "FOO", Seq: 9, Account: "1234"}.Encode(nil)
			require.NoError(t, err)
			return b
		}, 9},
		"wrong key": {func(t *testing.T) []byte { return nullFrame(t, 10, testKeys["AES-256"]) }, 10},
		"bad data":  {func(t *testing.T) []byte { return wrap(`"ADM-CID"0011#1234[no close`) }, 11},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := &Receiver{Key: key}
			p := dialPeer(t, startReceiver(t, r), key)
			p.write(tc.frame(t))
			duh := p.read()
			assert.Equal(t, IDDUH, duh.ID)
			assert.Equal(t, tc.seq, duh.Seq)
			assert.False(t, duh.Encrypted)
			assert.Equal(t, 1, r.Rejected())
			assert.Empty(t, r.Frames())
		})
	}
}

func TestReceiverTimestampWindow(t *testing.T) {
	recvNow := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		window time.Duration
		skew   time.Duration
		want   string
	}{
		"inside default window":   {0, 19 * time.Second, IDACK},
		"outside default window":  {0, 21 * time.Second, IDNAK},
		"behind default window":   {0, -time.Hour, IDNAK},
		"custom window":           {2 * time.Hour, time.Hour, IDACK},
		"check disabled":          {-1, 24 * time.Hour, IDACK},
		"no timestamp, no check":  {0, 0, IDACK},
		"custom window too small": {time.Second, 5 * time.Second, IDNAK},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := &Receiver{Window: tc.window, Now: func() time.Time { return recvNow }}
			p := dialPeer(t, startReceiver(t, r), nil)
			f := Frame{ID: IDSIADCS, Seq: 5, Account: "1234", Data: "#1234|Nri1/HA001"}
			if name != "no timestamp, no check" {
				f.Timestamp, f.HasTimestamp = recvNow.Add(tc.skew), true
			}
			b, err := f.Encode(nil)
			require.NoError(t, err)
			p.write(b)
			resp := p.read()
			assert.Equal(t, tc.want, resp.ID)
			assert.Equal(t, 5, resp.Seq)
			if tc.want == IDNAK {
				require.True(t, resp.HasTimestamp, "a NAK carries the receiver's time")
				assert.Equal(t, recvNow, resp.Timestamp)
				assert.Empty(t, r.Frames())
			}
		})
	}
}

func TestReceiverModes(t *testing.T) {
	for _, mode := range []Response{RespondNAK, RespondDUH, RespondSilent, RespondHangUp} {
		t.Run(mode.String(), func(t *testing.T) {
			var got []Received
			var mu sync.Mutex
			r := &Receiver{
				Mode:    func(Frame) Response { return mode },
				OnFrame: func(rec Received) { mu.Lock(); got = append(got, rec); mu.Unlock() },
			}
			p := dialPeer(t, startReceiver(t, r), nil)
			p.write(nullFrame(t, 1, nil))
			switch mode {
			case RespondNAK, RespondDUH:
				assert.Equal(t, mode.String(), p.read().ID)
			case RespondSilent:
				// A silent receiver still answers nothing to a second frame;
				// closing our side shows the receiver never wrote.
				require.NoError(t, p.conn.(*net.TCPConn).CloseWrite())
				_, err := p.rd.next()
				assert.ErrorIs(t, err, io.EOF)
			case RespondHangUp:
				_, err := p.rd.next()
				assert.ErrorIs(t, err, io.EOF)
			}
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, got, 1)
			assert.Equal(t, mode, got[0].Response)
			assert.Empty(t, r.Frames(), "only ACKed frames are kept")
		})
	}
}

func TestReceiverServeStops(t *testing.T) {
	t.Run("context cancelled closes connections", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		r := &Receiver{}
		go func() { done <- r.Serve(ctx, ln) }()
		p := dialPeer(t, ln.Addr().String(), nil)
		p.write(nullFrame(t, 1, nil))
		p.read() // the connection is being served
		cancel()
		require.NoError(t, <-done)
		_, err = p.rd.next()
		assert.Error(t, err, "the receiver closed our connection")
	})
	t.Run("listener failure is an error", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- (&Receiver{}).Serve(context.Background(), ln) }()
		require.NoError(t, ln.Close())
		err = <-done
		require.Error(t, err)
		assert.Contains(t, err.Error(), "dc09: receiver: accept on "+ln.Addr().String())
	})
}

func TestResponseString(t *testing.T) {
	assert.Equal(t, "Response(9)", fmt.Sprint(Response(9)))
}
