// SPDX-License-Identifier: Apache-2.0 OR MIT
// Checks mailnotary's RFC 4998 hash trees with Bouncy Castle's
// org.bouncycastle.tsp.ers, an independent implementation.
//
//   java -cp bcprov.jar:bcutil.jar:bcpkix.jar BcHashTree.java FILE
//
// FILE has one line "root HEX", then one line per leaf:
// "leaf HEX reduced L1;L2;..." where each list Li is comma-separated hex.
// Bouncy Castle computes the root over the sorted leaves itself and recovers
// the root from every reduced tree; the program prints "ok N" when all agree
// with the file's root and exits 1 with the first difference otherwise.

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

import org.bouncycastle.asn1.nist.NISTObjectIdentifiers;
import org.bouncycastle.asn1.tsp.PartialHashtree;
import org.bouncycastle.asn1.x509.AlgorithmIdentifier;
import org.bouncycastle.operator.DigestCalculator;
import org.bouncycastle.operator.bc.BcDigestCalculatorProvider;
import org.bouncycastle.tsp.ers.BinaryTreeRootCalculator;

public class BcHashTree {
    public static void main(String[] args) throws Exception {
        HexFormat hex = HexFormat.of();
        List<String> lines = Files.readAllLines(Path.of(args[0]));
        byte[] root = hex.parseHex(lines.get(0).split(" ")[1]);
        DigestCalculator sha256 = new BcDigestCalculatorProvider()
            .get(new AlgorithmIdentifier(NISTObjectIdentifiers.id_sha256));
        BinaryTreeRootCalculator calculator = new BinaryTreeRootCalculator();

        List<byte[]> leaves = new ArrayList<>();
        List<PartialHashtree[]> reduced = new ArrayList<>();
        for (String line : lines.subList(1, lines.size())) {
            String[] fields = line.split(" ");
            leaves.add(hex.parseHex(fields[1]));
            List<PartialHashtree> lists = new ArrayList<>();
            if (fields.length > 3 && !fields[3].isEmpty()) {
                for (String list : fields[3].split(";")) {
                    String[] items = list.split(",");
                    byte[][] values = new byte[items.length][];
                    for (int i = 0; i < items.length; i++) {
                        values[i] = hex.parseHex(items[i]);
                    }
                    lists.add(new PartialHashtree(values));
                }
            }
            reduced.add(lists.toArray(new PartialHashtree[0]));
        }

        // Bouncy Castle's generator sorts the leaves before building.
        leaves.sort((a, b) -> java.util.Arrays.compareUnsigned(a, b));
        PartialHashtree[] leafTrees = new PartialHashtree[leaves.size()];
        for (int i = 0; i < leaves.size(); i++) {
            leafTrees[i] = new PartialHashtree(leaves.get(i));
        }
        byte[] bcRoot = calculator.computeRootHash(sha256, leafTrees);
        if (!java.util.Arrays.equals(bcRoot, root)) {
            System.out.println("root differs: bc " + hex.formatHex(bcRoot));
            System.exit(1);
        }
        for (int i = 0; i < reduced.size(); i++) {
            PartialHashtree[] path = reduced.get(i);
            if (path.length == 0) {
                continue;
            }
            byte[] recovered = calculator.recoverRootHash(sha256, path);
            if (!java.util.Arrays.equals(recovered, root)) {
                System.out.println("reduced tree " + i + " recovers " + hex.formatHex(recovered));
                System.exit(1);
            }
        }
        System.out.println("ok " + reduced.size());
    }
}
