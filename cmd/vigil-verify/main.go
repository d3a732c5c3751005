// Command vigil-verify checks a Vigil evidence package offline: the zip a
// Vigil gateway produces for the police (a BagIt 1.0 bag holding original
// body-worn camera clips, their ledger inclusion proofs, a signed checkpoint
// and continuity records).
//
//	vigil-verify [--pubkey KEY_OR_FILE] [--quiet] PACKAGE.zip
//
// It needs no configuration and makes no network connection. It prints the
// exhibit, each clip with its times, size and SHA-256, a continuity summary
// and the checks that passed, and exits 0 when the package verifies, 1 when
// it does not (naming each file and check that failed) or cannot be read,
// and 2 for a usage error. --pubkey takes the gateway's verifier key, or a
// file holding it, obtained independently of the package; without it the
// key inside the package is used and the output says it was not
// independently checked.
//
// It depends only on the evidence/exhibit, evidence/bagit and
// evidence/ledger packages, never on the gateway, so it can be built for
// and handed to anyone (see the Makefile's cross target).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"
	"unicode"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/cmd/internal/buildinfo"
	"github.com/vigil-gw/vigil/evidence/bagit"
	"github.com/vigil-gw/vigil/evidence/exhibit"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage: vigil-verify [--pubkey KEY_OR_FILE] [--quiet] PACKAGE.zip
       vigil-verify --version

Checks a Vigil evidence package offline and prints what it holds and every
check. Exit status: 0 valid, 1 not valid or unreadable, 2 usage error.

  --pubkey KEY_OR_FILE  the gateway's verifier key (name+hash+key), or a file
                        holding it, obtained independently of the package
  --quiet               print only the result and any problems
  --version             print this verifier's version, commit, build date and
                        Go version, and exit
`

// Exit statuses.
const (
	exitValid   = 0
	exitInvalid = 1
	exitUsage   = 2
)

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil-verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	pubkey := fs.String("pubkey", "", "")
	quiet := fs.Bool("quiet", false, "")
	showVersion := fs.Bool("version", false, "")
	// Flags may come before or after the package name.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, usage)
				return exitValid
			}
			fmt.Fprintf(stderr, "vigil-verify: %v\n\n%s", err, usage)
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if *showVersion {
		// A report cites the verifier that produced it: say which build.
		fmt.Fprintln(stdout, "vigil-verify", buildinfo.Get())
		return exitValid
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "vigil-verify: give exactly one package file (got %d)\n\n%s", len(positional), usage)
		return exitUsage
	}
	path := positional[0]
	key, err := loadKey(*pubkey)
	if err != nil {
		fmt.Fprintf(stderr, "vigil-verify: --pubkey: %v\n", err)
		return exitUsage
	}

	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "vigil-verify: cannot open the package: %v\n", err)
		return exitInvalid
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		fmt.Fprintf(stderr, "vigil-verify: cannot read the package: %v\n", err)
		return exitInvalid
	}
	if !st.Mode().IsRegular() {
		fmt.Fprintf(stderr, "vigil-verify: %s is not a file\n", path)
		return exitInvalid
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var bar *progress
	opts := exhibit.Options{PubKey: key}
	if !*quiet {
		bar = &progress{w: stderr, tty: isTerminal(stderr), now: time.Now}
		opts.Progress = bar.update
	}
	rep, err := exhibit.Verify(ctx, f, st.Size(), opts)
	bar.finish()
	if err != nil {
		fmt.Fprintf(stderr, "vigil-verify: reading %s: %v\n", path, err)
		return exitInvalid
	}
	p := &printer{w: stdout}
	if *quiet {
		p.result(rep, key != "")
	} else {
		p.report(rep, path, st.Size(), key != "")
	}
	if !rep.OK() {
		return exitInvalid
	}
	return exitValid
}

// loadKey returns the verifier key given on the command line, directly or
// in a file. Keys hold '+', which file names seldom do, so the argument is
// tried as a key first.
func loadKey(arg string) (string, error) {
	if arg == "" {
		return "", nil
	}
	if _, err := note.NewVerifier(strings.TrimSpace(arg)); err == nil {
		return strings.TrimSpace(arg), nil
	}
	data, err := os.ReadFile(arg)
	if err != nil {
		return "", fmt.Errorf("%q is neither a verifier key (name+hash+key) nor a readable file: %w", arg, err)
	}
	k := strings.TrimSpace(string(data))
	if _, err := note.NewVerifier(k); err != nil {
		return "", fmt.Errorf("file %s does not hold a verifier key (name+hash+key): %w", arg, err)
	}
	return k, nil
}

// printer writes the report. Everything that comes from the package passes
// through clean, so a hostile package cannot drive the terminal.
type printer struct {
	w io.Writer
}

func (p *printer) line(format string, a ...any) {
	fmt.Fprintln(p.w, clean(fmt.Sprintf(format, a...)))
}

// clean escapes every character a terminal would act on rather than show.
func clean(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == ' ' || unicode.IsPrint(r) {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

func info(rep exhibit.Report, label string) string {
	v := bagit.Lookup(rep.Info, label)
	if len(v) == 0 {
		return "(not stated)"
	}
	return strings.Join(v, "; ")
}

const timeLayout = "2006-01-02T15:04:05.000Z"

func (p *printer) report(rep exhibit.Report, path string, size int64, keyGiven bool) {
	p.line("Evidence package:   %s (%s, %s)", orUnknown(rep.Bag), path, humanBytes(size))
	if rep.Bag != "" {
		p.line("Exhibit:            %s", info(rep, "External-Identifier"))
		p.line("Crime reference:    %s", info(rep, "Crime-Reference"))
		p.line("Requesting officer: %s, %s", info(rep, "Requesting-Officer"), info(rep, "Force"))
		p.line("Produced by:        %s on %s", info(rep, "Source-Organization"), info(rep, "Bagging-Date"))
		p.line("Release request:    %s, requested by %s, approved by %s", info(rep, "Internal-Sender-Identifier"),
			info(rep, "Release-Requested-By"), info(rep, "Release-Approved-By"))
	}
	switch {
	case rep.KeyChecked:
		p.line("Gateway key:        %s (the key given with --pubkey)", rep.Key)
	case keyGiven:
		p.line("Gateway key:        %s (NOT the key given with --pubkey)", orUnknown(rep.Key))
	default:
		p.line("Gateway key:        %s (taken from the package: NOT independently checked)", orUnknown(rep.Key))
	}
	if cp := rep.Checkpoint; cp.Size > 0 {
		p.line("Ledger checkpoint:  %s, %d entries, signed %s", cp.Origin, cp.Size, cp.Time.UTC().Format(timeLayout))
	}

	p.line("")
	p.line("Clips (%d; times UTC):", len(rep.Clips))
	for i, c := range rep.Clips {
		p.line("  %d. %s", i+1, c.File)
		if c.SHA256 != "" {
			p.line("     camera %s, worn by %s, site %s", c.Camera, orUnknown(c.Wearer), orUnknown(c.Site))
			p.line("     recorded %s to %s (%s)", c.Start.UTC().Format(timeLayout), c.End.UTC().Format(timeLayout), c.End.Sub(c.Start).Round(time.Second))
			p.line("     %d bytes (%s), SHA-256 %s", c.Size, humanBytes(c.Size), c.SHA256)
			p.line("     received %s (%s), ledger entry %d", c.Received.UTC().Format(timeLayout), c.Ingest, c.Index)
			if c.ClockUnsynchronised {
				p.line("     NOTE: the gateway's clock was not synchronised to a time source when it received this clip;")
				p.line("     its received time may be wrong (the mark is part of the signed ledger entry). The bytes are unaffected.")
			}
		}
		switch {
		case c.OK && c.Proved:
			p.line("     ok: the original bytes recorded in the ledger, included in the signed checkpoint; %d continuity steps", c.Steps)
		case c.OK:
			p.line("     the clip's own files are consistent, but its proof does not lead to a checkpoint signed by the trusted key")
		default:
			p.line("     FAILED: see the problems below")
		}
	}
	if len(rep.Continuity) > 0 {
		p.line("")
		p.line("Continuity (every step is in continuity/<camera>/<clip>.txt):")
		for _, c := range rep.Continuity {
			p.line("  %s", c)
		}
	}
	if len(rep.Passed) > 0 {
		p.line("")
		p.line("Checks passed:")
		for _, c := range rep.Passed {
			p.line("  ok  %s", c)
		}
	}
	for _, w := range rep.Warnings {
		p.line("")
		p.line("WARNING: %s", w)
	}
	p.line("")
	p.result(rep, keyGiven)
}

// result writes the problems and the one-line verdict.
func (p *printer) result(rep exhibit.Report, keyGiven bool) {
	if len(rep.Problems) > 0 {
		p.line("Problems (%d):", len(rep.Problems))
		for _, pr := range rep.Problems {
			p.line("  PROBLEM: %s", pr)
		}
		p.line("RESULT: NOT VALID: %d problem(s) found; the package must not be relied on as it is.", len(rep.Problems))
		return
	}
	switch {
	case rep.KeyChecked:
		p.line("RESULT: VALID: %s, %d clip(s); every check passed with the key given.", rep.Bag, len(rep.Clips))
	case !keyGiven:
		p.line("RESULT: VALID against the key inside the package: %s, %d clip(s). The key was NOT independently checked; run again with --pubkey.", rep.Bag, len(rep.Clips))
	default:
		p.line("RESULT: VALID: %s, %d clip(s).", rep.Bag, len(rep.Clips))
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// humanBytes writes a size in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
