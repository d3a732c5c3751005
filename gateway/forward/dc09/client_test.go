package dc09

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/forward"
)

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Account == "" {
		cfg.Account = "1234"
	}
	c := New(cfg)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func duress() forward.Message {
	return forward.Message{
		Key: "dev-1:7", AlertID: "alert-1", Kind: forward.KindAlarm, Event: "duress", Priority: 1,
		Device: "dev-1", Seq: 7, Zone: 5, Verified: true,
		Time:     time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second),
		Location: &forward.Location{Lat: 53.48, Lon: -2.24},
		Text:     "Duress at client home",
	}
}

// linkEvents records OnLink calls.
type linkEvents chan linkEvent

type linkEvent struct {
	up  bool
	err error
}

func (l linkEvents) onLink(up bool, err error) { l <- linkEvent{up, err} }

func (l linkEvents) wait(t *testing.T, up bool) linkEvent {
	t.Helper()
	select {
	case ev := <-l:
		require.Equal(t, up, ev.up, "link event: %v", ev.err)
		if up {
			assert.NoError(t, ev.err)
		} else {
			assert.Error(t, ev.err)
		}
		return ev
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no OnLink call", "waiting for up=%v", up)
	}
	return linkEvent{}
}

func TestClientSendACK(t *testing.T) {
	for _, format := range []Format{FormatADMCID, FormatSIADCS} {
		for keyName, key := range testKeys {
			t.Run(string(format)+"/"+keyName, func(t *testing.T) {
				r := &Receiver{Key: key}
				links := make(linkEvents, 10)
				c := newTestClient(t, Config{Addr: startReceiver(t, r), Account: "12AB", Receiver: "1", Prefix: "2",
					Format: format, Key: key, OnLink: links.onLink})
				m := duress()
				require.NoError(t, c.Send(context.Background(), m))
				links.wait(t, true)

				frames := r.Frames()
				require.Len(t, frames, 1)
				f := frames[0].Frame
				assert.Equal(t, key != nil, f.Encrypted)
				assert.Equal(t, 1, f.Seq)
				assert.Equal(t, "1", f.Receiver)
				assert.Equal(t, "2", f.Prefix)
				assert.Equal(t, "12AB", f.Account)
				if format == FormatADMCID {
					assert.Equal(t, IDADMCID, f.ID)
					assert.Equal(t, "#12AB|1121 01 005", f.Data)
				} else {
					assert.Equal(t, IDSIADCS, f.ID)
					assert.Equal(t, "#12AB|Nri1/HA005", f.Data)
				}
				assert.Equal(t, []string{"H" + formatTimestamp(m.Time), "X-2.240000", "Y53.480000", "IDuress at client home"}, f.XData)
				require.True(t, f.HasTimestamp)
				assert.WithinDuration(t, time.Now(), f.Timestamp, 5*time.Second, "frame time is the send time")
			})
		}
	}
}

func TestClientNAKThenACK(t *testing.T) {
	// The receiver's clock is an hour ahead: our first frame is outside its
	// window, the NAK tells us its time, and the resend is accepted.
	ahead := time.Hour
	var responses []Response
	var mu sync.Mutex
	r := &Receiver{
		Now:     func() time.Time { return time.Now().Add(ahead) },
		OnFrame: func(rec Received) { mu.Lock(); responses = append(responses, rec.Response); mu.Unlock() },
	}
	c := newTestClient(t, Config{Addr: startReceiver(t, r)})
	m := duress()
	require.NoError(t, c.Send(context.Background(), m))

	mu.Lock()
	assert.Equal(t, []Response{RespondNAK, RespondACK}, responses)
	mu.Unlock()
	frames := r.Frames()
	require.Len(t, frames, 1)
	f := frames[0].Frame
	assert.Equal(t, 1, f.Seq, "a resend after NAK keeps the sequence number")
	assert.WithinDuration(t, time.Now().Add(ahead), f.Timestamp, DefaultWindow)
	assert.Contains(t, f.XData, "H"+formatTimestamp(m.Time), "the event time is unchanged")

	// The offset is kept: the next alarm is accepted at once.
	require.NoError(t, c.Send(context.Background(), m))
	mu.Lock()
	assert.Equal(t, []Response{RespondNAK, RespondACK, RespondACK}, responses)
	mu.Unlock()
}

func TestClientNAKForever(t *testing.T) {
	var count atomic.Int32
	r := &Receiver{Mode: func(Frame) Response { count.Add(1); return RespondNAK }}
	c := newTestClient(t, Config{Addr: startReceiver(t, r)})
	err := c.Send(context.Background(), duress())
	require.ErrorIs(t, err, ErrNAK)
	assert.False(t, forward.IsPermanent(err), "a NAK is worth retrying later")
	assert.EqualValues(t, 1+maxNAKResends, count.Load())
}

func TestClientDUHIsPermanent(t *testing.T) {
	r := &Receiver{Mode: func(Frame) Response { return RespondDUH }}
	links := make(linkEvents, 10)
	c := newTestClient(t, Config{Addr: startReceiver(t, r), OnLink: links.onLink})
	err := c.Send(context.Background(), duress())
	require.Error(t, err)
	assert.True(t, forward.IsPermanent(err))
	assert.ErrorIs(t, err, ErrDUH)
	assert.Contains(t, err.Error(), "DUH")
	links.wait(t, true) // the receiver answered: the link is up
}

func TestClientSilentReceiverTimesOut(t *testing.T) {
	r := &Receiver{Mode: func(Frame) Response { return RespondSilent }}
	links := make(linkEvents, 10)
	addr := startReceiver(t, r)
	const ackTimeout = 200 * time.Millisecond
	c := newTestClient(t, Config{Addr: addr, AckTimeout: ackTimeout, OnLink: links.onLink})
	start := time.Now()
	err := c.Send(context.Background(), duress())
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.False(t, forward.IsPermanent(err))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Contains(t, err.Error(), addr)
	assert.Contains(t, err.Error(), "no response")
	assert.GreaterOrEqual(t, elapsed, ackTimeout)
	assert.Less(t, elapsed, ackTimeout+2*time.Second)
	links.wait(t, false)
}

func TestClientReconnectsAfterHangUp(t *testing.T) {
	var n atomic.Int32
	r := &Receiver{Mode: func(Frame) Response {
		if n.Add(1) == 1 {
			return RespondHangUp
		}
		return RespondACK
	}}
	addr := startReceiver(t, r)
	links := make(linkEvents, 10)
	c := newTestClient(t, Config{Addr: addr, OnLink: links.onLink})

	err := c.Send(context.Background(), duress())
	require.Error(t, err)
	assert.False(t, forward.IsPermanent(err))
	assert.Contains(t, err.Error(), addr)
	assert.Contains(t, err.Error(), "closed by receiver")
	links.wait(t, false)

	require.NoError(t, c.Send(context.Background(), duress()))
	links.wait(t, true)
	assert.Len(t, r.Frames(), 1)
}

func TestClientResendsOnceWhenReusedConnectionDrops(t *testing.T) {
	var n atomic.Int32
	r := &Receiver{Mode: func(Frame) Response {
		if n.Add(1) == 2 {
			return RespondHangUp // the second frame arrives on a reused connection
		}
		return RespondACK
	}}
	c := newTestClient(t, Config{Addr: startReceiver(t, r)})
	require.NoError(t, c.Send(context.Background(), duress()))
	require.NoError(t, c.Send(context.Background(), duress()), "resent on a new connection")
	frames := r.Frames()
	require.Len(t, frames, 2)
	assert.Equal(t, 2, frames[1].Frame.Seq, "the resend keeps the sequence number")
	assert.EqualValues(t, 3, n.Load())
}

func TestClientReconnectsAfterIdleClose(t *testing.T) {
	// A receiver that ACKs one frame per connection and then hangs up, as
	// ARCs do with idle links: the next Send must notice before sending.
	closed := make(chan struct{}, 10)
	addr := fakeReceiver(t, func(conn net.Conn, rd *frameReader) {
		raw, err := rd.next()
		if err != nil {
			return
		}
		f, err := ParseFrame(raw, nil)
		if err != nil {
			return
		}
		b, _ := Frame{ID: IDACK, Seq: f.Seq, Account: f.Account}.Encode(nil)
		_, _ = conn.Write(b)
		_ = conn.Close()
		closed <- struct{}{}
	})
	c := newTestClient(t, Config{Addr: addr})
	for range 3 {
		require.NoError(t, c.Send(context.Background(), duress()))
		<-closed
	}
}

func TestClientSkipsStaleResponses(t *testing.T) {
	addr := fakeReceiver(t, func(conn net.Conn, rd *frameReader) {
		for {
			raw, err := rd.next()
			if err != nil {
				return
			}
			f, err := ParseFrame(raw, nil)
			if err != nil {
				return
			}
			stale, _ := Frame{ID: IDACK, Seq: f.Seq%9999 + 1, Account: f.Account}.Encode(nil)
			other, _ := Frame{ID: IDNull, Seq: f.Seq, Account: f.Account}.Encode(nil)
			duhStale, _ := Frame{ID: IDDUH, Seq: 9999, Account: f.Account}.Encode(nil)
			ack, _ := Frame{ID: IDACK, Seq: f.Seq, Account: f.Account}.Encode(nil)
			var out []byte
			out = append(out, stale...)
			out = append(out, "\ngarbage\r"...)
			out = append(out, other...)
			out = append(out, duhStale...)
			out = append(out, ack...)
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
	})
	c := newTestClient(t, Config{Addr: addr})
	require.NoError(t, c.Send(context.Background(), duress()))
	require.NoError(t, c.Send(context.Background(), duress()))
}

func TestClientSequenceWraps(t *testing.T) {
	r := &Receiver{}
	c := newTestClient(t, Config{Addr: startReceiver(t, r)})
	c.seq = 9998
	for range 3 {
		require.NoError(t, c.Send(context.Background(), duress()))
	}
	var seqs []int
	for _, rec := range r.Frames() {
		seqs = append(seqs, rec.Frame.Seq)
	}
	assert.Equal(t, []int{9999, 1, 2}, seqs)
}

func TestClientConcurrentSends(t *testing.T) {
	r := &Receiver{Key: testKeys["AES-128"]}
	c := newTestClient(t, Config{Addr: startReceiver(t, r), Format: FormatSIADCS, Key: testKeys["AES-128"]})
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := duress()
			m.Zone = i + 1
			assert.NoError(t, c.Send(context.Background(), m))
		}()
	}
	wg.Wait()
	frames := r.Frames()
	require.Len(t, frames, n)
	var seqs []int
	for _, rec := range frames {
		seqs = append(seqs, rec.Frame.Seq)
	}
	slices.Sort(seqs)
	for i := range n {
		assert.Equal(t, i+1, seqs[i], "one frame at a time, each with its own SEQ")
	}
}

func TestClientHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &Receiver{
		Mode:    func(Frame) Response { return RespondSilent },
		OnFrame: func(Received) { cancel() }, // cancel once the frame is on its way
	}
	c := newTestClient(t, Config{Addr: startReceiver(t, r), AckTimeout: time.Minute})
	start := time.Now()
	err := c.Send(ctx, duress())
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, forward.IsPermanent(err))
	assert.Less(t, time.Since(start), 10*time.Second)

	// An already-cancelled context fails before connecting.
	err = c.Send(ctx, duress())
	require.ErrorIs(t, err, context.Canceled)
}

func TestClientDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens here now
	links := make(linkEvents, 10)
	c := newTestClient(t, Config{Addr: addr, DialTimeout: time.Second, OnLink: links.onLink})
	err = c.Send(context.Background(), duress())
	require.Error(t, err)
	assert.False(t, forward.IsPermanent(err))
	assert.Contains(t, err.Error(), "dc09: send to "+addr+": dial:")
	links.wait(t, false)
}

func TestClientPermanentErrorsDoNotDial(t *testing.T) {
	cases := map[string]struct {
		cfg Config
		m   forward.Message
		is  error
	}{
		"unknown event":   {Config{Addr: "127.0.0.1:1", Account: "1234"}, forward.Message{Event: "tea_break"}, errEvent},
		"test restore":    {Config{Addr: "127.0.0.1:1", Account: "1234"}, forward.Message{Event: "test", Kind: forward.KindRestore}, errEvent},
		"bad account":     {Config{Addr: "127.0.0.1:1", Account: "XYZ!"}, duress(), ErrConfig},
		"bad key":         {Config{Addr: "127.0.0.1:1", Account: "1234", Key: []byte("short")}, duress(), ErrConfig},
		"no address port": {Config{Addr: "localhost", Account: "1234"}, duress(), ErrConfig},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := New(tc.cfg)
			defer c.Close()
			err := c.Send(context.Background(), tc.m)
			require.ErrorIs(t, err, tc.is)
			assert.True(t, forward.IsPermanent(err))
			assert.True(t, strings.HasPrefix(err.Error(), "dc09: "), err.Error())
		})
	}
}

func TestClientClose(t *testing.T) {
	r := &Receiver{}
	c := New(Config{Addr: startReceiver(t, r), Account: "1234"})
	require.NoError(t, c.Send(context.Background(), duress()))
	require.NoError(t, c.Close())
	err := c.Send(context.Background(), duress())
	require.ErrorIs(t, err, ErrClosed)
	assert.False(t, forward.IsPermanent(err))
	require.NoError(t, c.Close(), "Close twice is fine")
}

func TestClientCloseInterruptsSend(t *testing.T) {
	c := New(Config{Account: "1234", AckTimeout: time.Minute})
	r := &Receiver{
		Mode:    func(Frame) Response { return RespondSilent },
		OnFrame: func(Received) { go c.Close() },
	}
	c.cfg.Addr = startReceiver(t, r)
	c.cfgErr = c.cfg.Validate()
	err := c.Send(context.Background(), duress())
	require.ErrorIs(t, err, ErrClosed)
}

func TestClientLinkTest(t *testing.T) {
	var silent atomic.Bool
	var nulls atomic.Int32
	r := &Receiver{Mode: func(f Frame) Response {
		if f.ID == IDNull {
			nulls.Add(1)
		}
		if silent.Load() {
			return RespondSilent
		}
		return RespondACK
	}}
	links := make(linkEvents, 100)
	c := newTestClient(t, Config{Addr: startReceiver(t, r), LinkTest: 20 * time.Millisecond,
		AckTimeout: 100 * time.Millisecond, OnLink: links.onLink})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	links.wait(t, true) // first link test
	silent.Store(true)
	ev := links.wait(t, false)
	assert.ErrorIs(t, ev.err, os.ErrDeadlineExceeded)
	silent.Store(false)
	links.wait(t, true)

	cancel()
	require.NoError(t, <-done)
	assert.GreaterOrEqual(t, nulls.Load(), int32(3))
	for _, rec := range r.Frames() {
		assert.Equal(t, IDNull, rec.Frame.ID)
		assert.Empty(t, rec.Frame.Data)
		assert.True(t, rec.Frame.HasTimestamp)
	}
}

func TestClientLinkDownAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	links := make(linkEvents, 10)
	c := newTestClient(t, Config{Addr: addr, LinkTest: time.Hour, OnLink: links.onLink})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	links.wait(t, false)
	cancel()
	require.NoError(t, <-done)
}

func TestClientLinkTestDisabled(t *testing.T) {
	r := &Receiver{}
	c := newTestClient(t, Config{Addr: startReceiver(t, r), LinkTest: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	require.NoError(t, c.Send(context.Background(), duress()))
	cancel()
	require.NoError(t, <-done)
	require.Len(t, r.Frames(), 1)
	assert.Equal(t, IDADMCID, r.Frames()[0].Frame.ID, "no NULL frames were sent")
}

// fakeReceiver serves each connection with handle, for behaviour the real
// Receiver does not have.
func fakeReceiver(t *testing.T, handle func(conn net.Conn, rd *frameReader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
				handle(conn, newFrameReader(conn))
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func TestErrorsWrap(t *testing.T) {
	err := forward.Permanent(errors.Join(ErrDUH))
	assert.ErrorIs(t, err, ErrDUH)
}
