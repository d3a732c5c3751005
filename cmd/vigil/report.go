package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/devices/pki"
	"github.com/vigil-gw/vigil/gateway/app"
)

// reportCmd runs `vigil report --month YYYY-MM [--site S] --format html|csv`.
//
// Incidents live in the gateway's state database, which the running gateway
// holds open exclusively, so the report is asked of the gateway's API as
// the caller (their token decides, as in the console), not read from disk.
func reportCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.add(fs)
	month := fs.String("month", time.Now().Format("2006-01"), "the calendar month, YYYY-MM (in governance.timezone)")
	site := fs.String("site", "", "one site (default: every site, with a section per site)")
	format := fs.String("format", "html", "html, csv or json")
	named := fs.Bool("named", false, "include names, incident ids and crime references (default: anonymised, fit to share)")
	out := fs.String("out", "", "write the report to this file (default: stdout)")
	tokenFile := fs.String("token-file", "", "file holding your API token (default: the VIGIL_TOKEN environment variable)")
	api := fs.String("api", "", "the gateway's API, http(s)://host:port (default: from the config's http and http_cert_file)")
	caFile := fs.String("ca", "", "CA certificate for an https API (default: STATE/pki/ca.crt when present, else the system's)")
	cfg, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if _, err := time.Parse("2006-01", *month); err != nil {
		return fmt.Errorf("--month %q: want YYYY-MM", *month)
	}
	switch *format {
	case "html", "csv", "json":
	default:
		return fmt.Errorf("--format %q: html, csv or json", *format)
	}
	secret, err := readToken(*tokenFile)
	if err != nil {
		return err
	}
	if secret == "" {
		return errNoToken
	}
	base, err := apiBase(cfg, *api)
	if err != nil {
		return err
	}
	client, err := apiClient(cfg, *caFile)
	if err != nil {
		return err
	}
	q := url.Values{"month": {*month}, "format": {*format}}
	if *site != "" {
		q.Set("site", *site)
	}
	if *named {
		q.Set("named", "1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/reports/monthly?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("report: is vigil running at %s? %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("report: %s: %s", resp.Status, apiErrorText(resp.Body))
	}
	w, done, err := outFile(*out, stdout)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, resp.Body)
	return errors.Join(err, done())
}

// apiBase is the gateway's API address: --api, else the config's listen
// address (a wildcard host reached on loopback), https with a certificate.
func apiBase(cfg app.Config, flagValue string) (string, error) {
	if flagValue != "" {
		u, err := url.Parse(flagValue)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("--api %q: want http(s)://host:port", flagValue)
		}
		return strings.TrimSuffix(flagValue, "/"), nil
	}
	host, port, err := net.SplitHostPort(cfg.HTTP)
	if err != nil {
		return "", fmt.Errorf("config http %q: %w", cfg.HTTP, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.HTTPCertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

// apiClient trusts caFile, else the site CA in the state directory when
// there is one (vigil pki issues the API's certificate from it), else the
// system's roots.
func apiClient(cfg app.Config, caFile string) (*http.Client, error) {
	if caFile == "" {
		if p := pki.CAPath(pki.DefaultDir(cfg.State)); fileExists(p) {
			caFile = p
		}
	}
	if caFile == "" {
		return http.DefaultClient, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s: no PEM certificates", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return &http.Client{Transport: tr}, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// apiErrorText is the "error" of an API error body, or the start of the body.
func apiErrorText(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4096))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(b))
}
