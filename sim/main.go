// Command sim is the runbook's lab vCenter: govmomi's simulator loaded with a scenario and
// corrected where it differs from a real vCenter in ways the vMotion runbook depends on.
// runbook/lab.py builds and starts it; see sim/README.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	scenarioFile := flag.String("scenario", "", "scenario JSON file (written by runbook/lab.py from sim/scenarios/*.toml)")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0 picks a free one)")
	user := flag.String("user", "administrator@vsphere.local", "the only user name accepted")
	passwordFile := flag.String("password-file", "", "file holding the password (mode 0600), or - for stdin")
	stateDir := flag.String("state-dir", ".", "directory for the ready file, certificate and datastore files")
	useTLS := flag.Bool("tls", false, "serve HTTPS with a generated self-signed certificate")
	dataDir := flag.String("data-dir", "", "directory for the datastores' files (default STATE-DIR/datastores; removed at stop)")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if *dataDir == "" {
		*dataDir = filepath.Join(*stateDir, "datastores")
	}
	if err := run(*scenarioFile, *listen, *user, *passwordFile, *stateDir, *dataDir, *useTLS); err != nil {
		log.Printf("lab vCenter: %v", err)
		os.Exit(1)
	}
}

func readPassword(path string) (string, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else if path != "" {
		data, err = os.ReadFile(path)
	} else {
		return "", fmt.Errorf("-password-file is required (the password is never a command-line argument)")
	}
	if err != nil {
		return "", err
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("the password file is empty")
	}
	return pw, nil
}

func run(scenarioFile, listen, user, passwordFile, stateDir, dataDir string, useTLS bool) error {
	started := time.Now()
	stopProfile := startProfile()
	defer stopProfile()
	password, err := readPassword(passwordFile)
	if err != nil {
		return err
	}
	s, err := loadScenario(scenarioFile)
	if err != nil {
		return err
	}
	lab.scenario, lab.user = s, user
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)

	// An empty vCenter model: the scenario supplies every object.
	m := simulator.VPX()
	m.Datacenter, m.Portgroup, m.Host, m.Cluster, m.ClusterHost, m.Datastore, m.Machine = 0, 0, 0, 0, 0, 0, 0
	m.DelayConfig.MethodDelay = map[string]int{}
	if err := m.Create(); err != nil {
		return err
	}
	lab.delay = &m.DelayConfig
	inv, err := buildInventory(context.Background(), m.Service, s, dataDir)
	if err != nil {
		return err
	}
	applyFixups(inv, s)
	startHostMemory()
	fixEventTemplates()
	checkerRef := *simulator.Map.Get(types.ManagedObjectReference{Type: "ServiceInstance", Value: "ServiceInstance"}).(*simulator.ServiceInstance).Content.VmProvisioningChecker
	checker := &ProvisioningChecker{}
	checker.Self = checkerRef
	simulator.Map.Put(checker)

	m.Service.Listen = &url.URL{Host: listen, User: url.UserPassword(user, password)}
	var caFile string
	if useTLS {
		if m.Service.TLS, caFile, err = makeTLS(stateDir); err != nil {
			return err
		}
	}
	server := m.Service.NewServer()
	defer server.Close()
	registerControls(m.Service.ServeMux)
	registerPprof(m.Service.ServeMux)
	server.Config.Handler = soapMiddleware(server.Config.Handler)
	collectAfterBuilding()

	u := *server.URL
	u.User = nil
	ready := map[string]interface{}{
		"url": u.String(), "pid": os.Getpid(), "ca_file": caFile,
		"vms": len(s.VMs), "hosts": len(s.Hosts), "seconds": time.Since(started).Seconds(),
	}
	if err := writeReady(filepath.Join(stateDir, "ready.json"), ready); err != nil {
		return err
	}
	log.Printf("lab vCenter ready at %s: scenario %s, %d hosts, %d VMs, built in %.1f s",
		u.String(), s.Name, len(s.Hosts), len(s.VMs), time.Since(started).Seconds())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	stopProfile() // before the clean-up, which may outlast the launcher's grace period
	log.Printf("lab vCenter stopping")
	return nil
}

// writeReady writes the ready file atomically, so the launcher never reads half of it.
func writeReady(path string, v interface{}) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
