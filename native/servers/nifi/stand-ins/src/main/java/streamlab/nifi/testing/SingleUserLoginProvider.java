package streamlab.nifi.testing;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.spec.KeySpec;
import java.util.HexFormat;
import java.util.concurrent.TimeUnit;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import org.apache.nifi.authentication.AuthenticationResponse;
import org.apache.nifi.authentication.LoginCredentials;
import org.apache.nifi.authentication.LoginIdentityProvider;
import org.apache.nifi.authentication.LoginIdentityProviderConfigurationContext;
import org.apache.nifi.authentication.LoginIdentityProviderInitializationContext;
import org.apache.nifi.authentication.exception.InvalidLoginCredentialsException;
import org.apache.nifi.authentication.exception.ProviderCreationException;

/**
 * One username and password, checked against a PBKDF2 hash: the test harness's stand-in for
 * NiFi's single-user-provider, whose NAR the registry here does not serve.
 *
 * <p>Same contract as the real provider for a client: POST /nifi-api/access/token with the
 * username and password returns a bearer token, wrong ones return 400 or 401.
 */
public class SingleUserLoginProvider implements LoginIdentityProvider {
    private static final long EXPIRATION_MS = TimeUnit.HOURS.toMillis(8);
    private static final int ITERATIONS = 120_000;

    private String username;
    private byte[] salt;
    private byte[] hash;

    @Override
    public void initialize(LoginIdentityProviderInitializationContext context) {
    }

    @Override
    public void onConfigured(LoginIdentityProviderConfigurationContext context) {
        username = context.getProperty("Username");
        String saltHex = context.getProperty("Password Salt");
        String hashHex = context.getProperty("Password Hash");
        if (isBlank(username) || isBlank(saltHex) || isBlank(hashHex)) {
            throw new ProviderCreationException(
                    "Username, Password Salt and Password Hash are required");
        }
        salt = HexFormat.of().parseHex(saltHex.trim());
        hash = HexFormat.of().parseHex(hashHex.trim());
    }

    @Override
    public AuthenticationResponse authenticate(LoginCredentials credentials) {
        boolean userMatches = MessageDigest.isEqual(
                username.getBytes(StandardCharsets.UTF_8),
                String.valueOf(credentials.getUsername()).getBytes(StandardCharsets.UTF_8));
        boolean passwordMatches = MessageDigest.isEqual(hash, derive(credentials.getPassword()));
        if (!userMatches || !passwordMatches) {
            throw new InvalidLoginCredentialsException("Username or password is not valid");
        }
        return new AuthenticationResponse(username, username, EXPIRATION_MS, getClass().getSimpleName());
    }

    private byte[] derive(String password) {
        try {
            KeySpec spec = new PBEKeySpec(String.valueOf(password).toCharArray(), salt, ITERATIONS, 256);
            return SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256").generateSecret(spec).getEncoded();
        } catch (Exception e) {
            throw new IllegalStateException("PBKDF2 unavailable", e);
        }
    }

    private static boolean isBlank(String value) {
        return value == null || value.isBlank();
    }

    @Override
    public void preDestruction() {
    }
}
