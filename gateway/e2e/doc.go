// Package e2e holds Vigil's end-to-end tests and benchmarks: simulated devices
// publish through a real broker (Mosquitto started by the test, or the embedded
// one) to a real gateway, which forwards to a real TCP DC-09 receiver and a
// webhook receiver. The package has no production code.
package e2e
