// The Flex Consumption function app (Linux, Python 3.11) and its app settings.
param name string
param location string
param tags object
param planId string
param storageAccountName string
param deploymentContainerName string
param identityId string
param identityClientId string
param applicationInsightsName string
param virtualNetworkSubnetId string = ''
param appSettings object
@description('Client ID of the Entra app registration App Service Authentication signs people in with.')
param authClientId string
@description('Application ID URI of that registration (an accepted token audience besides the client ID).')
param authIdentifierUri string = ''
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: planId
    httpsOnly: true
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      // No ftpsState: Flex Consumption refuses it (Azure/azure-cli#31414); FTP stays off through ftpBasicAuth below.
      minTlsVersion: '1.2' // TLS 1.2 or later only
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11' // matches the Python the project is built and tested with
      }
    }
  }
}

// Child resources are declared at the top level with `parent:` (the Bicep linter's preference): checkov's parser
// (pycep) keeps only the last child nested in a resource, so nested children would go unchecked.

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(appSettings, {
    // The host's own storage, reached with the managed identity (the account allows no shared keys).
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue // also the fan-out's queue triggers (learn functions-reference#connecting-to-host-storage-with-an-identity)
    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table // also the ticket store
    // The identity DefaultAzureCredential uses for Key Vault, Tables, Graph and telemetry.
    AZURE_CLIENT_ID: identityClientId
    // App Service Authentication proves the app registration with this identity's token: no client secret.
    OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID: identityClientId
    WEBSITE_AUTH_AAD_ALLOWED_TENANTS: tenant().tenantId
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // The consent link returns to APP_URL/api/tenants/consent: the site's own host name, so it matches the redirect
    // URI registered with the cloud's App Service domain (azurewebsites.us, chinacloudsites.cn, ...) everywhere.
    APP_URL: 'https://${site.properties.defaultHostName}'
  })
}

// No basic (publishing profile) credentials: deployment uses the deployer's Entra ID token.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: { allow: false }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: { allow: false }
}

// Sign-in with Microsoft Entra ID in front of every route but the OAuth callback (ServiceNow's redirect,
// protected by its browser-bound state), the push endpoint (signed by ServiceNow with HMAC) and the tenant consent
// callback (a customer's admin, who has no account here, comes back from Entra ID's admin consent endpoint; its
// single-use state is bound to the tenant record, docs/design.md#several-microsoft-tenants). The app checks the
// principal and the caller's role itself as well (docs/design.md#portal-and-sign-in).
resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  dependsOn: [ settings ] // one config write to the site at a time; it names OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID
  properties: {
    platform: { enabled: true }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage' // API calls with X-Requested-With get 401 instead
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: [ '/api/oauth/callback', '/api/servicenow/events', '/api/tenants/consent' ]
    }
    httpSettings: {
      requireHttps: true
      forwardProxy: { convention: 'NoProxy' }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
          clientId: authClientId
          clientSecretSettingName: 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID' // a federated credential, no secret
        }
        login: {
          loginParameters: [ 'scope=openid profile email' ] // sign-in only: no token store, so no /.auth/refresh
        }
        validation: {
          allowedAudiences: empty(authIdentifierUri) ? [ authClientId ] : [ authClientId, authIdentifierUri ]
        }
      }
    }
    login: {
      // Off: on Flex Consumption the default (file) token store has no shared file system and the blob store needs
      // a SAS URL the storage account's no-shared-key policy forbids. The app needs only the principal header; an
      // ID token, where a token store passes one, is still validated (docs/design.md#portal-and-sign-in).
      tokenStore: { enabled: false }
      preserveUrlFragmentsForLogins: false
      allowedExternalRedirectUrls: []
    }
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
