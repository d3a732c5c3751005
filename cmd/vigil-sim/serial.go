package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/devices"
	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
)

// pendantFlags collects repeated --pendant ID=KEYFILE flags.
type pendantFlags []string

// String lists the flags given, for the flag package.
func (p *pendantFlags) String() string { return strings.Join(*p, ",") }

// Set adds one ID=KEYFILE.
func (p *pendantFlags) Set(v string) error {
	if _, _, ok := strings.Cut(v, "="); !ok {
		return fmt.Errorf("%q: want ID=KEYFILE", v)
	}
	*p = append(*p, v)
	return nil
}

// readKeyFile reads a pendant's HMAC key: hex digits, surrounding white space
// ignored.
func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, usageError{fmt.Sprintf("key file %s: not a key in hex (%v)", path, err)}
	}
	return key, nil
}

// runSerial simulates a radio receiver relaying pendants onto a serial line
// in the serial frame protocol of devices/PROTOCOL.md.
func runSerial(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serial", flag.ContinueOnError)
	port := fs.String("port", "", "serial device to relay on (one end of a socat pair, or a USB adapter wired to the gateway's)")
	usePTY := fs.Bool("pty", false, "create a pseudo-terminal pair, print the path to give vigil, and relay on it until stopped")
	link := fs.String("link", "", "with --pty: also make this symbolic link to the gateway's end (like socat's link=)")
	baud := fs.Int("baud", 115200, "line speed for --port")
	site := fs.String("site", "demo", "site id of the pendants (for logs: the gateway's serial port configuration says the site)")
	device := fs.String("device", "btn-1", "pendant id, with --key-file")
	keyFile := fs.String("key-file", "", "file holding the pendant's HMAC key in hex (the key the gateway's registry holds)")
	var more pendantFlags
	fs.Var(&more, "pendant", "another pendant as ID=KEYFILE (repeatable)")
	duress := fs.Bool("duress", false, "press duress on every pendant, wait for the gateway's acks and exit")
	cancel := fs.Bool("cancel", false, "send duress_cancel from every pendant (after the duress, with --duress), wait for the acks and exit")
	heartbeat := fs.Duration("heartbeat", firmwaresim.DefaultHeartbeat, "heartbeat interval of every pendant when neither --duress nor --cancel is given")
	timeout := fs.Duration("timeout", 10*time.Second, "how long --duress and --cancel wait for the acks")
	retransmit := fs.Duration("retransmit", firmwaresim.DefaultRetransmitInterval, "how long a pendant waits for an ack before it sends its frame again")
	seqDir := fs.String("seq-dir", "", "directory recording each pendant's last counter (ID.seq), so restarts continue after it (default: start at the current Unix time in seconds)")
	noise := fs.Float64("noise", 0, "fraction of transmissions preceded by random garbage bytes")
	truncate := fs.Float64("truncate", 0, "fraction of transmissions cut short")
	replay := fs.Float64("replay", 0, "fraction of transmissions followed by an earlier, already acknowledged frame sent again")
	wrongKey := fs.Float64("wrong-key", 0, "fraction of transmissions with a MAC made with a wrong key")
	seed := fs.Uint64("seed", 0, "random seed for the faults, for a reproducible run (0: random)")
	verbose := fs.Bool("verbose", false, "log line and protocol details to stderr")
	if err := parseFlags(fs, args, stdout, "serial (--port PATH | --pty [--link PATH]) (--key-file F | --pendant ID=KEYFILE ...) [flags]"); err != nil {
		return err
	}
	switch {
	case (*port == "") == !*usePTY:
		return usageError{"give exactly one of --port PATH and --pty"}
	case *link != "" && !*usePTY:
		return usageError{"--link needs --pty"}
	case *timeout <= 0:
		return usageError{fmt.Sprintf("--timeout %s must be positive", *timeout)}
	case *heartbeat <= 0 && !*duress && !*cancel:
		return usageError{fmt.Sprintf("--heartbeat %s must be positive", *heartbeat)}
	}

	pendants := make(map[string][]byte)
	add := func(id, file string) error {
		if _, dup := pendants[id]; dup {
			return usageError{fmt.Sprintf("pendant %s given twice", id)}
		}
		key, err := readKeyFile(file)
		if err != nil {
			return err
		}
		pendants[id] = key
		return nil
	}
	if *keyFile != "" {
		if err := add(*device, *keyFile); err != nil {
			return err
		}
	}
	for _, p := range more {
		id, file, _ := strings.Cut(p, "=")
		if err := add(id, file); err != nil {
			return err
		}
	}
	if len(pendants) == 0 {
		return usageError{"--key-file (or --pendant ID=KEYFILE) is required: pendants authenticate their frames"}
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	cfg := firmwaresim.SerialRelayConfig{
		Port: *port, Baud: *baud, Site: *site, Pendants: pendants,
		RetransmitInterval: *retransmit, SeqDir: *seqDir, Seed: *seed,
		SerialFaults: firmwaresim.SerialFaults{Noise: *noise, Truncate: *truncate, Replay: *replay, WrongKey: *wrongKey},
		Logger:       slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	where := *port
	if *usePTY {
		pt, err := firmwaresim.OpenPTY(*link)
		if err != nil {
			return err
		}
		defer pt.Close()
		cfg.Line = pt.Master
		where = pt.Path
		if *link != "" {
			where = *link + " -> " + pt.Path
		}
	}
	relay, err := firmwaresim.NewSerialRelay(cfg)
	if err != nil {
		return usageError{strings.TrimPrefix(err.Error(), "firmwaresim: ")}
	}
	ids := relay.Pendants()
	if *usePTY {
		fmt.Fprintf(stdout, "pty %s: give vigil this serial port path; pendants %s\n", where, strings.Join(ids, ", "))
	}

	// The relay runs until the command is done; a line that fails ends the
	// command with its error.
	runCtx, stopRun := context.WithCancel(ctx)
	lineCtx, lineFailed := context.WithCancelCause(ctx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		if err := relay.Run(runCtx); err != nil {
			lineFailed(err)
		}
	}()
	defer func() {
		stopRun()
		<-ran
		lineFailed(nil)
	}()
	lineErr := func() error { return errors.New(strings.TrimPrefix(context.Cause(lineCtx).Error(), "firmwaresim: ")) }
	failure := func(err error, onTimeout string) error {
		if ctx.Err() == nil && lineCtx.Err() != nil {
			return lineErr()
		}
		return explain(ctx, err, onTimeout)
	}

	if *duress || *cancel {
		opCtx, stopOp := context.WithTimeout(lineCtx, *timeout)
		defer stopOp()
		var steps []devices.Type
		if *duress {
			steps = append(steps, devices.TypeDuress)
		}
		if *cancel {
			steps = append(steps, devices.TypeDuressCancel)
		}
		for _, typ := range steps {
			presses := make([]firmwaresim.SerialPress, 0, len(ids))
			for _, id := range ids {
				p, err := relay.Press(opCtx, id, typ)
				if err != nil {
					return failure(err, fmt.Sprintf("%s %s not sent within %s", typ, id, *timeout))
				}
				presses = append(presses, p)
			}
			for _, p := range presses {
				rtt, err := relay.WaitAcked(opCtx, p.Device, p.Counter)
				if err != nil {
					return failure(err, fmt.Sprintf("%s %s counter %d not acknowledged within %s: is vigil reading %s with this pendant's key?", typ, p.Device, p.Counter, *timeout, where))
				}
				fmt.Fprintf(stdout, "%s %s counter %d acknowledged in %s\n", typ, p.Device, p.Counter, rtt.Round(100*time.Microsecond))
			}
		}
		return nil
	}

	fmt.Fprintf(stdout, "relaying %d pendants on site %s via %s; heartbeat every %s until interrupted\n", len(ids), *site, where, *heartbeat)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "stopped: %s\n", relay.Stats())
			return nil
		case <-lineCtx.Done():
			if ctx.Err() != nil {
				continue // interrupted: the ctx case reports it
			}
			return lineErr()
		case <-t.C:
			for _, id := range ids {
				if _, err := relay.Press(ctx, id, devices.TypeHeartbeat); err != nil && ctx.Err() == nil {
					return err
				}
			}
			t.Reset(*heartbeat)
		}
	}
}
