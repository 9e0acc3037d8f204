// Validates every KEDA ScaledObject in the manifest files given against KEDA's
// CRD schema (the @kubernetes-models/keda package, installed beside this script
// by scripts/test.d/71-keda.sh). Documents are separated by `---` lines and
// written as JSON (which YAML reads as is). Prints one line per object and
// exits 1 if any fails.
import { readFileSync } from "node:fs";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";

let failed = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  const docs = readFileSync(file, "utf8").split(/^---$/m).map((d) => d.trim()).filter(Boolean);
  for (const doc of docs) {
    const object = JSON.parse(doc);
    if (object.kind !== "ScaledObject") continue;
    checked += 1;
    try {
      new ScaledObject(object).validate();
      console.log(`${file}: ScaledObject ${object.metadata.name} passed`);
    } catch (e) {
      failed += 1;
      console.log(`${file}: ScaledObject ${object.metadata?.name} failed: ${e.message}`);
    }
  }
}
if (checked === 0) {
  console.log("no ScaledObject found");
  process.exit(1);
}
process.exit(failed ? 1 : 0);
