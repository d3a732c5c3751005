package app

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// Defaults for watchBroker.
const (
	brokerCheckEvery = 5 * time.Second
	brokerAlertAfter = 30 * time.Second
)

// watchBroker raises one P2 "mqtt_down" system alert per spell in which the
// gateway has not been connected to its MQTT broker for brokerAlertAfter
// (a.brokerAlertAfter in tests), and notes the recovery on it. While the
// broker is unreachable no button's alarm reaches the gateway, so the
// supervisors (webhooks) and the console must hear of it; a reconnect within
// the grace period, which brokers and networks do, raises nothing.
func (a *App) watchBroker(ctx context.Context) error {
	every, after := cmp.Or(a.brokerCheckEvery, brokerCheckEvery), cmp.Or(a.brokerAlertAfter, brokerAlertAfter)
	t := time.NewTicker(every)
	defer t.Stop()
	downSince := time.Time{}
	if !a.mqtt.Connected() {
		downSince = time.Now()
	}
	raised := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := time.Now()
		if a.mqtt.Connected() {
			if raised != "" {
				if _, err := a.engine.AddNote(raised, "vigil", "connected to the MQTT broker again"); err != nil {
					a.log.Error("could not note the broker's recovery on its alert", "alert", raised, "err", err)
				}
			}
			downSince, raised = time.Time{}, ""
			continue
		}
		if downSince.IsZero() {
			downSince = now
		}
		if raised != "" || now.Sub(downSince) < after {
			continue
		}
		broker := a.cfg.MQTT.URL
		if broker == "" {
			broker = "the embedded broker"
		}
		al, err := a.engine.RaiseSystem(EventMQTTDown, a.cfg.Site, fmt.Sprintf(
			"not connected to %s for %s: no button alarm can reach this gateway (vigil doctor checks the broker)",
			redact(broker), now.Sub(downSince).Round(time.Second)))
		if err != nil {
			a.log.Error("could not raise the broker alert", "err", err)
			continue
		}
		raised = al.ID
		a.outbox.Wake()
	}
}

// EventMQTTDown is the system alert for a lost broker connection.
const EventMQTTDown = "mqtt_down"
