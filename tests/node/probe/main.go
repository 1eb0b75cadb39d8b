// probe: the one program of the node tier's test image (tests/node_e2e.rs), static, standard
// library only.
//
//	probe serve ADDR   answer 200 "ok" on /healthz and /readyz (a pod's probes)
//	probe whoami       as an in-cluster client does: read the pod's ServiceAccount token and
//	                   CA, reach the API server through the `kubernetes` Service
//	                   (KUBERNETES_SERVICE_HOST/PORT), print the identity the API server
//	                   gives the token (a SelfSubjectReview) as "whoami: <username>"
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount/"

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe serve ADDR | probe whoami")
	}
	switch os.Args[1] {
	case "serve":
		if len(os.Args) != 3 {
			fail("usage: probe serve ADDR")
		}
		ok := func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }
		http.HandleFunc("/healthz", ok)
		http.HandleFunc("/readyz", ok)
		fmt.Println("serving on", os.Args[2])
		fail(http.ListenAndServe(os.Args[2], nil))
	case "whoami":
		whoami()
	default:
		fail("unknown command " + os.Args[1])
	}
}

func whoami() {
	token, err := os.ReadFile(saDir + "token")
	check("read the ServiceAccount token", err)
	ca, err := os.ReadFile(saDir + "ca.crt")
	check("read the ServiceAccount ca.crt", err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		fail("ca.crt holds no certificate")
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		fail("KUBERNETES_SERVICE_HOST/PORT are not set")
	}
	url := "https://" + net.JoinHostPort(host, port) + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	check("build the request", err)
	req.Header.Set("Authorization", "Bearer "+string(bytes.TrimSpace(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	check("POST "+url, err)
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		fail(fmt.Sprintf("POST %s: %s %s", url, resp.Status, answer))
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	check("decode the SelfSubjectReview", json.Unmarshal(answer, &review))
	fmt.Printf("via: %s\nwhoami: %s\n", url, review.Status.UserInfo.Username)
}

func check(what string, err error) {
	if err != nil {
		fail(what + ": " + err.Error())
	}
}

func fail(v any) {
	fmt.Fprintln(os.Stderr, "probe:", v)
	os.Exit(1)
}
