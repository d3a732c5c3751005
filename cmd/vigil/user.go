package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-gw/vigil/governance/access"
)

// userCmd runs `vigil user SUB …`. stdin is where a password comes from when
// no --password-file is given.
//
// Passwords are never prompted for on a terminal: without golang.org/x/term
// there is no portable way to turn echo off, and a password shown on screen
// (and kept in the scrollback) is worse than none. Pipe it in or use
// --password-file.
func userCmd(sub string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	var role, wearer, passwordFile *string
	var withToken *bool
	needsName := true
	switch sub {
	case "add":
		role = fs.String("role", "", roleNames())
		wearer = fs.String("wearer", "", "wearer users: the device wearer name (as in vigil device add --wearer) whose footage they may see")
		passwordFile = fs.String("password-file", "", "read the password from the first line of this file (default: stdin, which must not be a terminal)")
		withToken = fs.Bool("token", false, "no password: create an API token and print it once instead (for scripts)")
	case "passwd":
		passwordFile = fs.String("password-file", "", "read the password from the first line of this file (default: stdin, which must not be a terminal)")
	case "list":
		needsName = false
	case "disable", "enable", "token":
	default:
		return fmt.Errorf("user: unknown command %q (add, list, disable, enable, passwd, token)", sub)
	}
	// The name comes first ("user add NAME --role …"); flag parsing stops at
	// the first non-flag, so take it off before parsing.
	var name string
	if needsName {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			fs.Usage()
			return fmt.Errorf("user %s: the user NAME comes first: vigil user %s NAME …", sub, sub)
		}
		name, args = args[0], args[1:]
	}
	cfg, err := c.parse(fs, args)
	if err != nil {
		return err
	}

	// Check the user and read and check the password before changing
	// anything, so that a mistake does not leave a user half made.
	if sub == "add" {
		if err := access.CheckUser(access.User{Name: name, Role: access.Role(*role), Wearer: *wearer}); err != nil {
			return err
		}
	}
	var password string
	if sub == "passwd" || (sub == "add" && !*withToken) {
		if password, err = readPassword(*passwordFile, stdin); err != nil {
			return fmt.Errorf("user %s: %w", sub, err)
		}
		if err := access.CheckPassword(password); err != nil {
			return err
		}
	} else if sub == "add" && *passwordFile != "" {
		return errors.New("user add: --password-file and --token: choose one (a password for logging in, or a token for a script)")
	}

	ctx := context.Background()
	s, closeDB, err := openAccess(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeDB()
	switch sub {
	case "add":
		if err := s.AddUser(ctx, access.User{Name: name, Role: access.Role(*role), Wearer: *wearer}, time.Now()); err != nil {
			return err
		}
		if *withToken {
			fmt.Fprintf(stderr, "added user %s (%s) without a password\n", name, *role)
			return printToken(ctx, s, name, stdout, stderr)
		}
		if err := s.SetPassword(ctx, name, password); err != nil {
			return fmt.Errorf("user add: %s was added but has no password (set one with vigil user passwd): %w", name, err)
		}
		fmt.Fprintf(stdout, "added user %s (%s)\n", name, *role)
	case "list":
		return userList(ctx, s, stdout)
	case "disable":
		if err := s.Disable(ctx, name, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "disabled %s: their sessions have ended and their tokens are refused\n", name)
	case "enable":
		if err := s.Enable(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "enabled %s\n", name)
	case "passwd":
		if err := s.SetPassword(ctx, name, password); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password set for %s; their sessions have ended\n", name)
	case "token":
		return printToken(ctx, s, name, stdout, stderr)
	}
	return nil
}

func userList(ctx context.Context, s *access.Store, stdout io.Writer) error {
	list, err := s.Users(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tWEARER\tPASSWORD\tTOKENS\tSTATUS\tCREATED")
	for _, u := range list {
		status, pw := "active", "no"
		if u.Disabled {
			status = "disabled"
		}
		if u.HasPassword {
			pw = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", u.Name, u.Role, u.Wearer, pw, u.Tokens, status, u.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

// readPassword returns the first line of file, or of stdin when file is "".
// A terminal on stdin is refused (see userCmd).
func readPassword(file string, stdin io.Reader) (string, error) {
	var r io.Reader = stdin
	from := "stdin"
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		defer f.Close()
		r, from = f, file
	} else if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return "", errors.New("no password given: use --password-file F or pipe it on stdin (vigil does not prompt: it cannot hide what you type)")
		}
	}
	line, err := bufio.NewReader(io.LimitReader(r, access.MaxPasswordLength+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("password from %s: %w", from, err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", fmt.Errorf("password from %s: the first line is empty", from)
	}
	return line, nil
}
