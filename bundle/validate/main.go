// Command validate runs the operator-framework validators that `operator-verify` has no flag for
// (good practices, OperatorHub v2, standard categories and capabilities, deprecated APIs) on an OLM
// bundle directory, prints every error and warning, and exits 1 if there is any: the bundle must be
// clean, not merely error-free.
//
//	go run . ../..            # the bundle/ directory (manifests/ and metadata/)
package main

import (
	"fmt"
	"os"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
	"github.com/operator-framework/api/pkg/validation/errors"
)

// The Kubernetes the project tests against, for the deprecated and removed API checks.
const k8sVersion = "1.37.0"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: validate BUNDLE_DIR")
		os.Exit(2)
	}
	bundle, err := manifests.GetBundleFromDir(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "reading the bundle in %s: %v\n", os.Args[1], err)
		os.Exit(2)
	}
	validators := validation.DefaultBundleValidators.WithValidators(
		validation.OperatorHubV2Validator,
		validation.StandardCategoriesValidator,
		validation.StandardCapabilitiesValidator,
		validation.ObjectValidator,
		validation.GoodPracticesValidator,
		validation.AlphaDeprecatedAPIsValidator,
	)
	objects := append(bundle.ObjectsToValidate(), map[string]string{"k8s-version": k8sVersion})
	problems := 0
	for _, result := range validators.Validate(objects...) {
		problems += report("ERROR", result.Errors)
		problems += report("WARNING", result.Warnings)
	}
	if problems > 0 {
		fmt.Printf("%d problems in the bundle %s\n", problems, bundle.Name)
		os.Exit(1)
	}
	fmt.Printf("bundle %s: 0 errors, 0 warnings\n", bundle.Name)
}

func report(level string, found []errors.Error) int {
	for _, e := range found {
		fmt.Printf("%s: %s\n", level, e.Error())
	}
	return len(found)
}
