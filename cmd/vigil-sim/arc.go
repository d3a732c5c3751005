package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/vigil-gw/vigil/gateway/forward/dc09"
)

// runARC runs a demonstration alarm receiving centre: a real SIA DC-09
// receiver that ACKs every valid frame and prints it, so the tour can show an
// alarm arriving. It is the same receiver the integration tests use.
func runARC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("arc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "TCP address to receive DC-09 frames on")
	keyHex := fs.String("key", "", "AES key in hex (32, 48 or 64 digits) when the gateway encrypts")
	mode := fs.String("respond", "ack", "how to answer alarms: ack, nak, duh or silent (to test escalation)")
	window := fs.Duration("window", dc09.DefaultWindow, "timestamp tolerance; frames outside it are NAKed with the receiver's time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	var key []byte
	if *keyHex != "" {
		var err error
		if key, err = hex.DecodeString(*keyHex); err != nil || (len(key) != 16 && len(key) != 24 && len(key) != 32) {
			return usageError{"--key must be 32, 48 or 64 hex digits"}
		}
	}
	resp := map[string]dc09.Response{"ack": dc09.RespondACK, "nak": dc09.RespondNAK, "duh": dc09.RespondDUH, "silent": dc09.RespondSilent}
	r, ok := resp[*mode]
	if !ok {
		return usageError{fmt.Sprintf("--respond %q: want ack, nak, duh or silent", *mode)}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	var mu sync.Mutex // one printer
	rcv := &dc09.Receiver{
		Key:    key,
		Window: *window,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Mode: func(f dc09.Frame) dc09.Response {
			if f.ID == dc09.IDNull {
				return dc09.RespondACK // link tests always answered
			}
			return r
		},
		OnFrame: func(got dc09.Received) {
			mu.Lock()
			defer mu.Unlock()
			f := got.Frame
			if f.ID == dc09.IDNull {
				fmt.Fprintf(stdout, "%s link test seq %04d from account %s: %s\n", got.At.Format(time.TimeOnly), f.Seq, f.Account, got.Response)
				return
			}
			fmt.Fprintf(stdout, "%s %s seq %04d account %s [%s] %s: %s\n", got.At.Format(time.TimeOnly), f.ID, f.Seq, f.Account,
				f.Data, strings.Join(f.XData, " "), got.Response)
		},
	}
	fmt.Fprintf(stdout, "DC-09 receiver listening on %s (answering alarms with %s); point vigil at tcp://%s?account=1234\n", ln.Addr(), *mode, ln.Addr())
	return rcv.Serve(ctx, ln)
}
