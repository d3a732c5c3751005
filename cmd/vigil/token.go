package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/governance/access"
)

// tokenCreate makes an API token and prints its secret, once.
func tokenCreate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	role := fs.String("role", "", "operator, supervisor or admin")
	name := fs.String("name", "", "the person or system the token is for (recorded on everything it does)")
	cfg, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	secret, t, err := app.OpenTokens(cfg.State).Create(*name, access.Role(*role), time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "created %s token %s for %s; it is shown once, keep it secret:\n", t.Role, t.ID, t.Name)
	fmt.Fprintln(stdout, secret)
	return nil
}

// tokenList shows the tokens without their secrets.
func tokenList(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil token list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	cfg, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	list, err := app.OpenTokens(cfg.State).List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tNAME\tCREATED")
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Role, t.Name, t.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}
