// Package firmwaresim simulates Vigil's lone-worker duress buttons so that the
// gateway can be exercised end to end without hardware. A Button is one device
// with its own MQTT session: it publishes v1 events (duress, duress_cancel,
// heartbeat, battery) with QoS 1 on its event topic and listens on its command
// topic for the gateway's alert_received confirmation, measuring the round trip
// the wearer would feel as a discreet haptic buzz. A Fleet runs many buttons in
// one process with Poisson-distributed presses and fault modes (malformed
// payloads, duplicates, skewed clocks) that the gateway must survive.
//
// The package speaks only the wire protocol defined in package devices; it
// deliberately knows nothing of the gateway, evidence or governance, so that
// it tests them as a real device would.
//
// Every button keeps a persistent MQTT session (stable client id, clean
// session off) and reconnects by itself. Events published while the broker is
// unreachable wait in memory (the one in flight in paho's session store, the
// rest in the button's own queue) and are sent, in publication order, when
// the connection returns; they are lost only if the process exits first (see
// Button.Flush).
package firmwaresim
