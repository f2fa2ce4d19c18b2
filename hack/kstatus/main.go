// Command kstatus prints the kstatus verdict (sigs.k8s.io/cli-utils/pkg/kstatus)
// of each object in the JSON that `kubectl get -o json` writes to its standard
// input: one JSON line per object, {"name", "status", "message"}.
//
// Flux's health checks and `kubectl`-adjacent tools (kpt, cli-utils' apply
// --wait) decide with this library whether a custom resource is Current,
// InProgress or Failed; tests/integration/test_kstatus.py runs it on
// VideoJobs of every phase so the conditions the operator writes are checked
// by the real thing, not by our reading of its rules.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	var object unstructured.Unstructured
	if err := object.UnmarshalJSON(data); err != nil {
		return err
	}
	items := []unstructured.Unstructured{object}
	if object.IsList() {
		list, err := object.ToList()
		if err != nil {
			return err
		}
		items = list.Items
	}
	encoder := json.NewEncoder(out)
	for i := range items {
		result, err := status.Compute(&items[i])
		if err != nil {
			return fmt.Errorf("%s: %w", items[i].GetName(), err)
		}
		line := verdict{Name: items[i].GetName(), Status: result.Status.String(), Message: result.Message}
		if err := encoder.Encode(line); err != nil {
			return err
		}
	}
	return nil
}
