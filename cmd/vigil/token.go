package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/governance/access"
)

// openAccess opens the users and tokens of the configured state directory.
// Its log (a legacy token file imported) goes to stderr.
func openAccess(ctx context.Context, cfg app.Config, stderr io.Writer) (*access.Store, func() error, error) {
	return app.OpenAccess(ctx, cfg.State, slog.New(slog.NewTextHandler(stderr, nil)))
}

// roleNames is the roles for messages: "operator, supervisor, …".
func roleNames() string {
	var names []string
	for _, r := range access.Roles() {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}

// tokenCreate makes an API token and prints its secret, once. It is the
// command of versions before users: the user NAME is created with ROLE if
// absent (without a password), and a user of another role is refused rather
// than changed.
func tokenCreate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	role := fs.String("role", "", roleNames())
	name := fs.String("name", "", "the user the token acts as (created if absent; recorded on everything it does)")
	cfg, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if !access.Role(*role).Valid() {
		return fmt.Errorf("token create: role %q: must be one of %s", *role, roleNames())
	}
	ctx := context.Background()
	s, closeDB, err := openAccess(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeDB()
	u, err := s.User(ctx, *name)
	switch {
	case errors.Is(err, access.ErrNoUser):
		if err := s.AddUser(ctx, access.User{Name: *name, Role: access.Role(*role)}, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "added user %s (%s) without a password\n", *name, *role)
	case err != nil:
		return err
	case u.Role != access.Role(*role):
		return fmt.Errorf("token create: user %s exists with role %s, not %s (vigil user token %q makes another token for them)", u.Name, u.Role, *role, u.Name)
	}
	return printToken(ctx, s, *name, stdout, stderr)
}

// printToken makes a token for a user and prints it: the secret alone on
// stdout (for scripts), the explanation on stderr.
func printToken(ctx context.Context, s *access.Store, name string, stdout, stderr io.Writer) error {
	secret, t, err := s.CreateToken(ctx, name, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "created %s token %s for %s; it is shown once, keep it secret:\n", t.Role, t.ID, t.User)
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
	ctx := context.Background()
	s, closeDB, err := openAccess(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeDB()
	list, err := s.Tokens(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tNAME\tCREATED")
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Role, t.User, t.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

// tokenRevoke deletes a token by its ID (from vigil token list).
func tokenRevoke(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil token revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs.Usage()
		return errors.New("token revoke: the token ID comes first: vigil token revoke ID (see vigil token list)")
	}
	id := args[0]
	cfg, err := c.parse(fs, args[1:])
	if err != nil {
		return err
	}
	ctx := context.Background()
	s, closeDB, err := openAccess(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeDB()
	if err := s.RevokeToken(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked token %s\n", id)
	return nil
}
