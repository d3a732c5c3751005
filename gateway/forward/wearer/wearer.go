// Package wearer forwards commands to the wearer's own device: after an ARC
// has acknowledged a duress, the button gets "alert_received" on its command
// topic and gives the wearer a discreet confirmation that help is coming.
package wearer

import (
	"context"
	"fmt"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/gateway/forward"
)

type publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Sender publishes device commands through an MQTT client.
type Sender struct{ pub publisher }

// New returns a Sender publishing through pub.
func New(pub publisher) *Sender { return &Sender{pub: pub} }

// Send publishes m as a command to m.Device; m.Event names the command. It
// succeeds when the broker has accepted the command (PUBACK).
func (s *Sender) Send(ctx context.Context, m forward.Message) error {
	if !devices.ValidID(m.Site) || !devices.ValidID(m.Device) {
		return forward.Permanent(fmt.Errorf("wearer: %s: no valid site/device to address", m.Key))
	}
	payload, err := devices.EncodeCommand(devices.Command{Cmd: m.Event, Alert: m.AlertID, Seq: m.Seq})
	if err != nil {
		return forward.Permanent(err)
	}
	if err := s.pub.Publish(ctx, devices.CommandTopic(m.Site, m.Device), payload); err != nil {
		return fmt.Errorf("wearer: %s: %w", m.Key, err)
	}
	return nil
}
