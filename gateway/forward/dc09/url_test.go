package dc09

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseURL(t *testing.T) {
	key := strings.Repeat("ab", 16)
	cases := map[string]struct {
		url  string
		want Config
	}{
		"minimal": {"tcp://arc.example:5000?account=1234",
			Config{Addr: "arc.example:5000", Account: "1234"}},
		"everything": {"tcp://10.0.0.1:5001?account=12AB&receiver=1&prefix=2F&format=SIA-DCS&key=" + key +
			"&ack_timeout=2s&dial_timeout=1s&link_test=30s",
			Config{Addr: "10.0.0.1:5001", Account: "12AB", Receiver: "1", Prefix: "2F", Format: FormatSIADCS,
				Key: []byte(strings.Repeat("\xab", 16)), AckTimeout: 2 * time.Second, DialTimeout: time.Second, LinkTest: 30 * time.Second}},
		"link test off": {"tcp://h:1?account=123&link_test=off", Config{Addr: "h:1", Account: "123", LinkTest: -1}},
		"tls": {"tls://arc.example:5443?account=1234&format=adm-cid",
			Config{Addr: "arc.example:5443", Account: "1234", Format: FormatADMCID,
				TLS: &tls.Config{ServerName: "arc.example", MinVersion: tls.VersionTLS12}}},
		"ipv6": {"tcp://[::1]:5000?account=1234", Config{Addr: "[::1]:5000", Account: "1234"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseURL(tc.url)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	secret := strings.Repeat("cd", 15) // 15 bytes: wrong size
	cases := map[string]struct {
		url, names string
	}{
		"scheme":              {"http://h:1?account=1234", "scheme"},
		"no port":             {"tcp://h?account=1234", "host:port"},
		"path":                {"tcp://h:1/x?account=1234", "only scheme"},
		"user":                {"tcp://u:p@h:1?account=1234", "user info"},
		"account missing":     {"tcp://h:1?receiver=1", "account is required"},
		"account not hex":     {"tcp://h:1?account=12G4", "parameter account"},
		"account short":       {"tcp://h:1?account=12", "parameter account"},
		"receiver long":       {"tcp://h:1?account=1234&receiver=1234567", "parameter receiver"},
		"prefix not hex":      {"tcp://h:1?account=1234&prefix=zz", "parameter prefix"},
		"format":              {"tcp://h:1?account=1234&format=json", "parameter format"},
		"key not hex":         {"tcp://h:1?account=1234&key=xyz", "parameter key"},
		"key size":            {"tcp://h:1?account=1234&key=" + secret, "parameter key"},
		"ack timeout":         {"tcp://h:1?account=1234&ack_timeout=soon", "parameter ack_timeout"},
		"negative dial":       {"tcp://h:1?account=1234&dial_timeout=-1s", "parameter dial_timeout"},
		"unknown":             {"tcp://h:1?account=1234&colour=red", `unknown parameter "colour"`},
		"repeated":            {"tcp://h:1?account=1234&account=5678", "parameter account: given 2 times"},
		"bad query":           {"tcp://h:1?account=%zz", "query"},
		"unparseable":         {"tcp://h:1\x7f?key=" + secret, "dc09: url:"},
		"link test zero":      {"tcp://h:1?account=1234&link_test=0s", "parameter link_test"},
		"fragment":            {"tcp://h:1?account=1234#frag", "only scheme"},
		"empty host":          {"tcp://:1?account=1234", "host:port"},
		"opaque":              {"tcp:h:1?account=1234", "host:port"},
		"key with bad size 2": {"tcp://h:1?account=1234&key=00", "parameter key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseURL(tc.url)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "dc09: url: "), err.Error())
			assert.Contains(t, err.Error(), tc.names)
			assert.NotContains(t, err.Error(), secret, "keys are never echoed")
		})
	}
}
