// The connector's app registration in Microsoft Entra ID: sign-in for the portal (App Service
// Authentication), tokens for machine clients, and the two app roles that decide what a caller may do.
// Creating it needs Application Developer (or Cloud Application Administrator), updating it ownership (declared
// below) or Cloud Application Administrator; main.bicep skips this module when an existing registration's client ID
// is given (admin guide: roles).
extension microsoftGraphV1

@description('Unique name of the registration, for idempotent redeployments.')
param uniqueName string

@description('Display name people see when they sign in and when roles are assigned.')
param displayName string

@description('Host name of the function app, for the App Service Authentication redirect URI.')
param hostName string

@description('Principal ID of the app\'s user-assigned managed identity: its federated credential replaces a secret.')
param managedIdentityPrincipalId string

@description('Object IDs of the registration\'s owners: the deploying principal and any other that deploys it.')
param ownerIds array

// A managed identity's token-exchange audience is per cloud (msgraph-bicep-types quickstart-templates/msi-as-a-fic-secretless).
var tokenExchangeAudiences = {
  AzureCloud: 'api://AzureADTokenExchange'
  AzureUSGovernment: 'api://AzureADTokenExchangeUSGov'
  USNat: 'api://AzureADTokenExchangeUSNat'
  USSec: 'api://AzureADTokenExchangeUSSec'
  AzureChinaCloud: 'api://AzureADTokenExchangeChina'
}
var adminRoleId = guid(uniqueName, 'Connector.Admin')
var createRoleId = guid(uniqueName, 'Tickets.Create')
// api://{tenant id}/{string}: a format Entra ID accepts where a tenant's app management policy requires a unique
// tenant identifier in identifier URIs (learn entra/identity-platform/identifier-uri-restrictions; Graph
// identifierUriConfiguration uriAdditionWithoutUniqueTenantIdentifier). Clients still ask for `{client id}/.default`.
var identifierUri = 'api://${tenant().tenantId}/${uniqueName}'

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  // Owners may update the registration without a directory role, so a second deployer (the pipeline after a
  // person's azd up, or the reverse) is not refused. 'append' adds them and removes no owner (msgraph-bicep-types
  // v1.0 1.0.0 types: MicrosoftGraphRelationship).
  owners: { relationships: ownerIds, relationshipSemantics: 'append' }
  signInAudience: 'AzureADMyOrg' // this tenant only
  identifierUris: [ identifierUri ]
  api: {
    requestedAccessTokenVersion: 2 // v2 tokens: the audience is the client ID, which ENTRA_AUDIENCE names
  }
  appRoles: [
    {
      id: adminRoleId
      value: 'Connector.Admin' // connect, disconnect, live checks, Secure Score refresh
      displayName: 'Connector admin'
      description: 'Connect the connector to ServiceNow, disconnect it, run live checks and refresh Secure Score.'
      allowedMemberTypes: [ 'User', 'Application' ]
      isEnabled: true
    }
    {
      id: createRoleId
      value: 'Tickets.Create' // create ServiceNow tickets from improvement actions
      displayName: 'Ticket creator'
      description: 'Create ServiceNow tickets from Microsoft Secure Score improvement actions.'
      allowedMemberTypes: [ 'User', 'Application' ]
      isEnabled: true
    }
  ]
  web: {
    redirectUris: [ 'https://${hostName}/.auth/login/aad/callback' ] // App Service Authentication's callback
    implicitGrantSettings: {
      enableIdTokenIssuance: true // the portal signs in with ID tokens only
      enableAccessTokenIssuance: false
    }
  }
}

// User assignment required: only people and clients given a role (or none, for readers) can sign in.
resource principal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
  owners: { relationships: ownerIds, relationshipSemantics: 'append' } // its updates need the same standing
  appRoleAssignmentRequired: true
}

// No client secret is stored: App Service Authentication proves the app with the managed identity's token.
resource federated 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = {
  name: '${app.uniqueName}/function-app-managed-identity'
  audiences: [ tokenExchangeAudiences[environment().name] ]
  issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
  subject: managedIdentityPrincipalId
  description: 'The function app\'s user-assigned managed identity, in place of a client secret'
}

output clientId string = app.appId
output identifierUri string = identifierUri
