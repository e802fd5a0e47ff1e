// The reader app: a second, multi-tenant app registration through which the connector reads the Secure Score of
// other tenants (a managed service provider's customers, docs/design.md#several-microsoft-tenants). Each customer's
// admin consents to it once (the admin consent link); its only permission is Microsoft Graph's
// SecurityEvents.ReadWrite.All as an application permission. No secret exists: the function app's user-assigned managed
// identity is its federated identity credential, and the connector exchanges that identity's token for a token in the
// customer's tenant (learn entra/workload-id/workload-identity-federation-config-app-trust-managed-identity). The
// sign-in app (entra.bicep) stays single-tenant. Creating it needs Application Developer (or Cloud Application
// Administrator); main.bicep skips this module when READER_APP_CLIENT_ID or ENTRA_APP_CLIENT_ID is given.
extension microsoftGraphV1

@description('Unique name of the registration, for idempotent redeployments.')
param uniqueName string

@description('Display name a customer\'s admin sees on the consent page and in Enterprise applications.')
param displayName string

@description('Host name of the function app, for the consent redirect URI.')
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
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000' // Microsoft Graph's well-known application id
var securityEventsReadWriteAll = 'd903a879-88e0-4c09-b0c9-82f6a1333f84' // SecurityEvents.ReadWrite.All (application)

resource readerApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  owners: { relationships: ownerIds, relationshipSemantics: 'append' } // as the sign-in app's (entra.bicep)
  signInAudience: 'AzureADMultipleOrgs' // any organisation's admin may consent; nobody signs in to it
  requiredResourceAccess: [
    {
      resourceAppId: microsoftGraphAppId
      resourceAccess: [ { id: securityEventsReadWriteAll, type: 'Role' } ] // what `/.default` asks each admin for
    }
  ]
  web: {
    redirectUris: [ 'https://${hostName}/api/tenants/consent' ] // where the admin consent endpoint returns
    implicitGrantSettings: {
      enableIdTokenIssuance: false
      enableAccessTokenIssuance: false
    }
  }
}

// No client secret or certificate: the managed identity's token for the token exchange proves the app in every tenant.
resource readerFederated 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = {
  name: '${readerApp.uniqueName}/function-app-managed-identity'
  audiences: [ tokenExchangeAudiences[environment().name] ]
  issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
  subject: managedIdentityPrincipalId
  description: 'The function app\'s user-assigned managed identity, in place of a client secret'
}

output clientId string = readerApp.appId
