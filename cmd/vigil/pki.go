package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/devices/pki"
	"github.com/vigil-gw/vigil/gateway/app"
)

// pkiFlags are the flags `vigil pki init` and `vigil pki issue` share: the
// common ones, and where the CA lives (STATE/pki unless --dir says).
type pkiFlags struct {
	common
	dir string
}

func (p *pkiFlags) add(fs *flag.FlagSet) {
	p.common.add(fs)
	fs.StringVar(&p.dir, "dir", "", "CA directory (default STATE/pki)")
}

// caDir parses args and returns the configuration and the CA directory.
func (p *pkiFlags) caDir(fs *flag.FlagSet, args []string) (app.Config, string, error) {
	cfg, err := p.parse(fs, args)
	if err != nil {
		return cfg, "", err
	}
	if p.dir != "" {
		return cfg, p.dir, nil
	}
	return cfg, pki.DefaultDir(cfg.State), nil
}

func pkiInit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil pki init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var p pkiFlags
	p.add(fs)
	name := fs.String("name", "", `the CA's name (default "Vigil SITE CA", SITE from the config)`)
	cfg, dir, err := p.caDir(fs, args)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = "Vigil " + cfg.Site + " CA"
	}
	if err := pki.Init(dir, *name, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and .key\n", pki.CAPath(dir))
	return nil
}

func pkiIssue(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil pki issue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var p pkiFlags
	p.add(fs)
	kindFlag := fs.String("kind", string(pki.Device), "device, gateway (CN = gateway_id) or server (a broker)")
	var hosts multi
	fs.Var(&hosts, "host", "server: an IP address or DNS name clients connect to (repeatable)")
	days := fs.Int("days", 0, "validity in days (default 730; never beyond the CA's)")
	force := fs.Bool("force", false, "replace an existing certificate and key")
	// The id comes first, as in "device add ID": flag parsing stops at the
	// first non-flag, so take it off before parsing.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs.Usage()
		return errors.New("pki issue: the ID comes first: vigil pki issue ID [--kind device|gateway|server] [--host H]")
	}
	id := args[0]
	_, dir, err := p.caDir(fs, args[1:])
	if err != nil {
		return err
	}
	kind, err := pki.ParseKind(*kindFlag)
	if err != nil {
		return err
	}
	if *days < 0 {
		return fmt.Errorf("pki issue: --days %d is negative", *days)
	}
	issue := pki.Issue
	if *force {
		issue = pki.Reissue
	}
	certPath, _, err := issue(dir, id, kind, hosts, time.Duration(*days)*24*time.Hour, time.Now())
	if errors.Is(err, pki.ErrExists) {
		return fmt.Errorf("%w; --force replaces it", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and .key\n", certPath)
	return nil
}
