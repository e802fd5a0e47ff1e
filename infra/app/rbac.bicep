// The roles the app's identity needs, and no more. Names are guid(scope, principal, role), so redeploying is idempotent.
// The deployer (a person's azd up, or the pipeline's principal) gets no data role here: deployment needs only
// Azure RBAC on the subscription (Owner, or Contributor + Role Based Access Control Administrator), since the
// client secret is written through Resource Manager and the package is published with the deployer's token.
// A data role would let the deployer read the stored ServiceNow tokens (Key Vault) and tickets (Tables).
param storageAccountName string
param keyVaultName string
param appInsightsName string
param appPrincipalId string

var roles = {
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // read and rewrite secrets: the token bundle changes on every refresh
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // deployment package and the host's blob leases (timer singleton)
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // the host's queues and the fan-out's: send, take, peek the poison queue (learn functions-bindings-storage-queue-trigger#identity-based-connections)
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // the ticket store (tickets, claims, keys, sync state)
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Entra ID ingestion into Application Insights
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

var storageRoles = [roles.storageBlobDataOwner, roles.storageQueueDataContributor, roles.storageTableDataContributor]

resource appStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  name: guid(storage.id, appPrincipalId, role)
  scope: storage
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource appSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
  }
}

resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}
