// SPDX-License-Identifier: Apache-2.0 OR MIT
// Validates RFC 4998 evidence records with Bouncy Castle's
// org.bouncycastle.tsp.ers, an independent implementation.
//
//   java -cp bcprov.jar:bcutil.jar:bcpkix.jar BcEvidenceRecord.java ER DATA [ER DATA]...
//
// For each pair: the record must parse, DATA must be present under it now
// (its hash leads through the reduced hash tree to the timestamped root),
// and the timestamp token's signature must verify with the certificate it
// embeds. Prints "ok N" for N valid pairs, or the first failure and exits 1.

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Date;

import org.bouncycastle.cms.SignerInformationVerifier;
import org.bouncycastle.cms.jcajce.JcaSimpleSignerInfoVerifierBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.operator.bc.BcDigestCalculatorProvider;
import org.bouncycastle.tsp.ers.ERSByteData;
import org.bouncycastle.tsp.ers.ERSEvidenceRecord;

public class BcEvidenceRecord {
    public static void main(String[] args) throws Exception {
        int checked = 0;
        for (int i = 0; i + 1 < args.length; i += 2) {
            byte[] record = Files.readAllBytes(Path.of(args[i]));
            byte[] data = Files.readAllBytes(Path.of(args[i + 1]));
            try {
                ERSEvidenceRecord er = new ERSEvidenceRecord(record, new BcDigestCalculatorProvider());
                er.validatePresent(new ERSByteData(data), new Date());
                SignerInformationVerifier verifier = new JcaSimpleSignerInfoVerifierBuilder()
                    .setProvider(new BouncyCastleProvider())
                    .build(er.getSigningCertificate());
                er.validate(verifier);
            } catch (Exception e) {
                System.out.println(args[i] + ": " + e);
                System.exit(1);
            }
            checked++;
        }
        System.out.println("ok " + checked);
    }
}
