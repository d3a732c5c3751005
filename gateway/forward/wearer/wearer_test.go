package wearer

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/gateway/forward"
)

type fakePub struct {
	topic   string
	payload []byte
	err     error
}

func (f *fakePub) Publish(_ context.Context, topic string, payload []byte) error {
	f.topic, f.payload = topic, payload
	return f.err
}

func TestPublishesAlertReceived(t *testing.T) {
	p := &fakePub{}
	err := New(p).Send(context.Background(), forward.Message{Key: "btn-1:42:received", AlertID: "btn-1.42", Event: devices.CmdAlertReceived, Site: "leeds", Device: "btn-1", Seq: 42})
	require.NoError(t, err)
	assert.Equal(t, "vigil/v1/leeds/btn-1/cmd", p.topic)
	c, err := devices.DecodeCommand(p.payload)
	require.NoError(t, err)
	assert.Equal(t, devices.Command{Cmd: "alert_received", Alert: "btn-1.42", Seq: 42}, c)
}

func TestErrors(t *testing.T) {
	err := New(&fakePub{err: errors.New("not connected")}).Send(context.Background(), forward.Message{Key: "k", Event: "alert_received", Site: "s", Device: "d"})
	require.Error(t, err)
	assert.False(t, forward.IsPermanent(err), "a broker outage is retried")
	err = New(&fakePub{}).Send(context.Background(), forward.Message{Key: "k", Event: "alert_received", Site: "s", Device: "a/b"})
	assert.True(t, forward.IsPermanent(err))
}
