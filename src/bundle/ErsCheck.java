// SPDX-License-Identifier: Apache-2.0 OR MIT
// Checks one RFC 4998 evidence record with Bouncy Castle's independent
// implementation (org.bouncycastle.tsp.ers), for a reader of an evidence
// bundle who does not want to trust the program that made it.
//
//   java -cp bcprov.jar:bcutil.jar:bcpkix.jar ErsCheck.java RECORD DATA ROOT
//
// RECORD is the evidence record (DER), DATA the file it is for, ROOT the
// batch root in hexadecimal. It checks that the SHA-256 of DATA leads
// through the record's reduced hash tree to ROOT, that the record's
// timestamp token stamps that same ROOT, and that the token's signature
// verifies with the certificate it carries. Whether that certificate is
// trustworthy and the token valid is for `openssl ts -verify`, the next
// step of VERIFY.md. Prints "ok" and the root, or what failed, and exits 1
// on failure.

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Date;
import java.util.HexFormat;

import org.bouncycastle.cms.SignerInformationVerifier;
import org.bouncycastle.cms.jcajce.JcaSimpleSignerInfoVerifierBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.operator.bc.BcDigestCalculatorProvider;
import org.bouncycastle.tsp.ers.ERSByteData;
import org.bouncycastle.tsp.ers.ERSEvidenceRecord;

public class ErsCheck {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: ErsCheck RECORD DATA ROOT");
            System.exit(2);
        }
        byte[] record = Files.readAllBytes(Path.of(args[0]));
        byte[] data = Files.readAllBytes(Path.of(args[1]));
        String expected = args[2].toLowerCase();
        try {
            ERSEvidenceRecord er = new ERSEvidenceRecord(record, new BcDigestCalculatorProvider());
            // The data is covered: its hash leads through the tree to the
            // value the timestamp token stamps.
            er.validatePresent(new ERSByteData(data), new Date());
            String root = HexFormat.of().formatHex(er.getPrimaryRootHash());
            if (!root.equals(expected)) {
                System.out.println("FAIL " + args[0] + ": the record leads to root " + root
                    + ", not to " + expected);
                System.exit(1);
            }
            SignerInformationVerifier verifier = new JcaSimpleSignerInfoVerifierBuilder()
                .setProvider(new BouncyCastleProvider())
                .build(er.getSigningCertificate());
            er.validate(verifier);
            System.out.println("ok " + args[0] + ": " + args[1] + " leads to the stamped root " + root);
        } catch (Exception e) {
            System.out.println("FAIL " + args[0] + ": " + e.getMessage());
            System.exit(1);
        }
    }
}
