package streamlab.nifi.testing;

import org.apache.nifi.authorization.AuthorizationRequest;
import org.apache.nifi.authorization.AuthorizationResult;
import org.apache.nifi.authorization.Authorizer;
import org.apache.nifi.authorization.AuthorizerConfigurationContext;
import org.apache.nifi.authorization.AuthorizerInitializationContext;
import org.apache.nifi.authorization.exception.AuthorizerCreationException;

/**
 * Grants everything to the one configured user and nothing to anyone else: the test harness's
 * stand-in for NiFi's single-user-authorizer, whose NAR the registry here does not serve.
 */
public class SingleUserAuthorizer implements Authorizer {
    private String username;

    @Override
    public void initialize(AuthorizerInitializationContext context) {
    }

    @Override
    public void onConfigured(AuthorizerConfigurationContext context) {
        username = context.getProperty("Username").getValue();
        if (username == null || username.isBlank()) {
            throw new AuthorizerCreationException("Username is required");
        }
    }

    @Override
    public AuthorizationResult authorize(AuthorizationRequest request) {
        if (username.equals(request.getIdentity())) {
            return AuthorizationResult.approved();
        }
        return AuthorizationResult.denied("Only " + username + " may use this test instance");
    }

    @Override
    public void preDestruction() {
    }
}
