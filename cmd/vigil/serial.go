package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/devices/serial"
)

// serialKey returns the hex key in path, creating the file with a new random
// key first if it does not exist. The key is never printed: the file is what
// is provisioned into the pendant.
func serialKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return "", fmt.Errorf("serial key: %w", err)
		}
		b = []byte(hex.EncodeToString(k))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("serial key: %w", err)
		}
		if _, err := f.Write(append(b, '\n')); err != nil {
			f.Close()
			return "", fmt.Errorf("serial key: %w", err)
		}
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("serial key: %w", err)
		}
	} else if err != nil {
		return "", fmt.Errorf("serial key: %w", err)
	}
	key := string(bytes.TrimSpace(b))
	if k, err := hex.DecodeString(key); err != nil || len(k) < registry.MinKeyLen {
		return "", fmt.Errorf("serial key file %s: want at least %d bytes in hex", path, registry.MinKeyLen)
	}
	return key, nil
}

// serialList prints the serial ports this machine has.
func serialList(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil serial list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	ports, err := serial.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tUSB VID:PID\tSERIAL\tPRODUCT")
	for _, p := range ports {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.VIDPID, p.SerialNumber, p.Product)
	}
	return tw.Flush()
}
